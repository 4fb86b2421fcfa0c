package main

import (
	"github.com/tether-dev/tether/internal/cli"

	"context"
	"io"
	"os"

	"github.com/tether-dev/tether/debugadapter"
)

func init() {
	register(command{name: "dap", args: "[--workspace DIR]",
		summary: "debug adapter (DAP) on stdio: attach to a remote dlv/debugpy through a proxy", run: dapCmd})
}

// dapCmd speaks DAP on stdin/stdout for VS Code's DebugAdapterExecutable.
// stdout carries DAP only: logs go to stderr.
func dapCmd(ctx context.Context, args []string) error {
	fs := flags("dap", "[--workspace DIR]", `Speak the Debug Adapter Protocol on stdin/stdout (VS Code: DebugAdapterExecutable).
The IDE sends attach with:
  proxy           a proxy of the workspace's tether.yaml
  target          "host:port" of a debug adapter as the proxy machine sees it
                  (dlv exec --headless --accept-multiclient --listen ..., dlv dap, debugpy --listen)
  substitutePath  [{"from": "<local dir>", "to": "<dir on the remote build>"}]
and any other arguments for the remote adapter (delve wants "mode": "remote").
Logs go to stderr.`)
	wsDir := fs.String("workspace", "", "workspace directory (default: the current directory)")
	verbose := fs.Bool("verbose", false, "log the bridge's activity to stderr")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return cli.ErrUsage
	}
	ws, err := workspaceFlag(*wsDir)
	if err != nil {
		return err
	}
	stdio := struct {
		io.Reader
		io.Writer
	}{os.Stdin, os.Stdout}
	return debugadapter.Serve(ctx, stdio, debugadapter.Config{Workspace: ws, Prompts: terminalPrompts{}, Logger: cliLogger(*verbose)})
}
