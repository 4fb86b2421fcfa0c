// Package launch holds sessions: a run configuration's runtime (where the
// app runs: a local process, a Docker container; runtime.go) composed with
// its proxy's transport (how bytes reach the cloud: an SSH proxy machine, a
// Kubernetes agent pod; transport.go), started, watched and stopped as one
// by the Manager of each client.
package launch
