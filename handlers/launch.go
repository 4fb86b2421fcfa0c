package handlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/tether-dev/tether/launch"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

func init() {
	// What launch has registered: its runtimes and transports.
	launchTypes = append(launchTypes, launch.Runtimes()...)
	proxyKinds = append(proxyKinds, launch.Transports()...)
	register(protocol.MethodLaunchPrepare, Method{Async: true, Handle: typed(launchPrepare)})
	register(protocol.MethodLaunchRelease, Method{Async: true, Handle: typed(launchRelease)})
	register(protocol.MethodLaunchStart, Method{Async: true, Handle: typed(launchStart)})
	register(protocol.MethodLaunchStop, Method{Async: true, Handle: typed(launchStop)})
}

func launchPrepare(ctx context.Context, env *Env, p *protocol.LaunchPrepareParams) (any, error) {
	if err := required("config", p.Config); err != nil {
		return nil, err
	}
	return launchError(env.Launches.Prepare(ctx, p.Config, p.Debug))
}

func launchRelease(ctx context.Context, env *Env, p *protocol.LaunchReleaseParams) (any, error) {
	if err := required("sessionId", p.SessionID); err != nil {
		return nil, err
	}
	return launchError[any](nil, env.Launches.Release(p.SessionID))
}

func launchStart(ctx context.Context, env *Env, p *protocol.LaunchStartParams) (any, error) {
	if err := required("config", p.Config); err != nil {
		return nil, err
	}
	l, err := env.Launches.Start(ctx, p.Config, p.Debug)
	if err != nil {
		return launchError[any](nil, err)
	}
	return protocol.LaunchStartResult{LaunchID: l.ID}, nil
}

func launchStop(ctx context.Context, env *Env, p *protocol.LaunchStopParams) (any, error) {
	if err := required("launchId", p.LaunchID); err != nil {
		return nil, err
	}
	return launchError[any](nil, env.Launches.Stop(p.LaunchID))
}

// launchError gives the failures of methods that open a tunnel or start an
// app their code and category (failedError): 2001 unless the error has a
// code of its own or is a bug.
func launchError[T any](v T, err error) (any, error) {
	if err == nil {
		return v, nil
	}
	e := failedError(err)
	var ps workspace.Problems
	if errors.As(err, &ps) {
		e.Message = fmt.Sprintf("the run configuration is invalid: %s", err)
	}
	return nil, e
}
