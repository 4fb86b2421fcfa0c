// Package debugadapter will hold the Debug Adapter Protocol bridge (go-dap):
// a DAP server for the IDE that relays to a remote debug adapter (delve,
// debugpy) dialled through a tunnel, translating source paths both ways.
package debugadapter
