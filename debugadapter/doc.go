// Package debugadapter is the Debug Adapter Protocol bridge: a DAP server
// for the IDE (VS Code's DebugAdapterExecutable, or a loopback socket) that
// attaches to a remote debug adapter (dlv --headless, dlv dap, debugpy)
// dialled through a tunnel, relays messages both ways and translates source
// paths between the local checkout and the remote build.
//
// Messages that need no change are relayed byte for byte (only the
// adapter's seq is renumbered), so vendor extensions survive.
//
// Attach failures carry their category (internal/errcat): bad attach
// arguments and unknown proxies are user errors, the tunnel and the target
// environment errors; an untagged one is logged as a bug.
package debugadapter
