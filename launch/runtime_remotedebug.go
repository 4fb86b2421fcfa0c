package launch

import (
	"context"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

// remoteDebug configurations: no app, a debug port in the private network
// forwarded to loopback (a Forward with a tunnel of its own to the
// configuration's proxy), held as a launch until it is stopped.

func init() { registerRuntime(remoteDebugRuntime{}) }

type remoteDebugRuntime struct{}

func (remoteDebugRuntime) Type() string { return workspace.TypeRemoteDebug }

func (remoteDebugRuntime) Start(ctx context.Context, s *starting) (App, error) {
	d := s.rc.RemoteDebug
	ws, err := s.m.Workspace.Load()
	if err != nil {
		return nil, err
	}
	px, ok := ws.File.Proxy(d.Proxy)
	if !ok {
		return nil, errcat.Config.Newf("no proxy named %q: %w", d.Proxy, workspace.ErrNotFound)
	}
	s.report(protocol.LaunchStateParams{State: protocol.StateConnecting})
	f, err := OpenForward(ctx, s.m.Workspace.Dir, px, d.Host, d.Port, d.LocalPort, s.m.Hooks)
	if err != nil {
		return nil, errcat.Environment.Wrap(err)
	}
	s.debugReady(func() string { return f.LocalAddress }) // once it runs
	return forwardApp{f}, nil
}

// forwardApp is a forward as a launch's App: it ends (exit code 0) when
// the forward is closed, by Stop or with its tunnel.
type forwardApp struct{ f *Forward }

func (a forwardApp) Wait() int {
	<-a.f.Done()
	return 0
}

func (a forwardApp) Stop() { a.f.Close() }
