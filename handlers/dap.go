package handlers

import (
	"context"
	"log/slog"
	"net"

	"github.com/tether-dev/tether/debugadapter"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/protocol"
)

func init() {
	register(protocol.MethodDebugDAPServer, Method{Async: true, Handle: typed(dapServer)})
}

// dapServer hands out the client's DAP endpoint (launch.Manager.DAPServer);
// each connection is served by the debug adapter, as `tether dap` is.
func dapServer(ctx context.Context, env *Env, p *protocol.DAPServerParams) (any, error) {
	addr, err := env.Launches.DAPServer(func(ctx context.Context, c net.Conn, log *slog.Logger) error {
		return debugadapter.Serve(ctx, c, debugadapter.Config{Workspace: env.Workspace, Prompts: env.Prompts, Logger: log})
	})
	if err != nil {
		return nil, errcat.Environment.Newf("debug/dapServer: %w", err)
	}
	return protocol.DAPServerResult{Address: addr}, nil
}
