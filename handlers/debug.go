package handlers

import (
	"context"

	"github.com/tether-dev/tether/protocol"
)

func init() {
	register(protocol.MethodDebugForward, Method{Async: true, Handle: typed(debugForward)})
	register(protocol.MethodDebugUnforward, Method{Async: true, Handle: typed(debugUnforward)})
}

// debugForward is "remote debug via proxy": a loopback port forwarded to a
// debug port in the private network, for IntelliJ's Remote JVM Debug.
func debugForward(ctx context.Context, env *Env, p *protocol.DebugForwardParams) (any, error) {
	if err := required("proxy", p.Proxy); err != nil {
		return nil, err
	}
	if err := required("host", p.Host); err != nil {
		return nil, err
	}
	if p.Port < 1 || p.Port > 65535 {
		return nil, InvalidParams("port", "must be between 1 and 65535")
	}
	return launchError(env.Launches.DebugForward(ctx, p.Proxy, p.Host, p.Port))
}

func debugUnforward(ctx context.Context, env *Env, p *protocol.DebugUnforwardParams) (any, error) {
	if err := required("forwardId", p.ForwardID); err != nil {
		return nil, err
	}
	return launchError[any](nil, env.Launches.Unforward(p.ForwardID))
}
