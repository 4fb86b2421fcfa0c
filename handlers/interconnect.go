package handlers

import (
	"context"
	"fmt"

	"github.com/tether-dev/tether/launch"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

func init() {
	register(protocol.MethodInterconnectStatus, Method{Handle: typed(interconnectStatus)})
	register(protocol.MethodProxyTest, Method{Async: true, Handle: typed(proxyTest)})
}

func interconnectStatus(ctx context.Context, env *Env, p *protocol.InterconnectStatusParams) (any, error) {
	return protocol.InterconnectStatusResult{Tunnels: env.Launches.Status(), DAPSessions: env.Launches.DAPSessions()}, nil
}

func proxyTest(ctx context.Context, env *Env, p *protocol.ProxyTestParams) (any, error) {
	if err := required("name", p.Name); err != nil {
		return nil, err
	}
	s, err := env.Workspace.Load()
	if err != nil {
		return nil, err
	}
	px, ok := s.File.Proxy(p.Name)
	if !ok {
		return nil, fmt.Errorf("no proxy named %q: %w", p.Name, workspace.ErrNotFound)
	}
	res := launch.TestProxy(ctx, env.Workspace.Dir, px, env.Prompts, p.Target)
	if err := ctx.Err(); err != nil {
		return nil, err // cancelled: -32800, not a failed step
	}
	return res, nil
}
