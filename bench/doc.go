// Package bench compares Tether's data path (plugins/ssh tunnel + channel
// SOCKS5 proxy with username/password) with OpenSSH's `ssh -D` against the
// same fake cloud sshd and the same cipher (aes128-gcm@openssh.com).
//
// Run it with
//
//	go test -run='^$' -bench=. -benchtime=1x ./bench/
//
// One iteration of each sub-benchmark is a complete fixed-size workload for
// both tools: 512 MiB downloaded over 1 and over 4 streams (best of 3
// alternating rounds), 500 sequential short connections (p50/p99), 2000
// concurrent connections. Results are custom metrics (tether_*, sshD_*,
// ratio*) and a table on stdout. Under -race the benchmark skips itself.
//
// Flags (after -args): -mib=N -rounds=N -latencyconns=N -concconns=N;
// -inproc runs the Tether proxy inside the benchmark process (by default it
// runs in a child process, as ssh -D does); -source=fakecloud downloads from
// fakecloud's own GET /bytes (ChaCha8 generated in the benchmark process)
// instead of a precomputed block.
package bench
