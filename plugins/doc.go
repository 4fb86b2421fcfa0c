// Package plugins groups the transports and runtimes that launch composes:
// plugins/ssh (a proxy machine over SSH), plugins/kubernetes (a temporary
// agent pod reached through the API server) and plugins/docker (the app in
// a container next to an intercepting sidecar).
package plugins
