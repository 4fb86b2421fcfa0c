// Package channel is the local channel service that apps on the laptop use to
// reach the cloud: a SOCKS5 server and an HTTP proxy on loopback, behind
// per-session credentials, that send routed targets through a tunnel.Tunnel
// (names unresolved, the far side resolves them) and the rest directly.
//
// The SOCKS5 server is our own (socks5.go, ~250 lines) rather than a library:
// github.com/things-go/go-socks5 and the other maintained servers are not on our
// module proxy, and github.com/armon/go-socks5 is unmaintained since 2016 and
// resolves names locally unless its resolver is replaced. Ours does only what we
// need (username/password auth, CONNECT, no local resolution) and is fuzzed.
package channel
