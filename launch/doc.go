// Package launch will hold sessions: a run configuration's runtime (a local
// process, or a Docker container) composed with its transport (an SSH proxy
// machine, or a Kubernetes agent pod), started, watched and stopped as one.
package launch
