package launch

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/workspace"
)

// exec configurations: any local command, routed through the channel by
// the proxy environment variables (ALL_PROXY, HTTP(S)_PROXY) that curl, Go,
// Python, Node... honour.

func init() { registerRuntime(execRuntime{}) }

type execRuntime struct{}

func (execRuntime) Type() string { return workspace.TypeExec }

func (r execRuntime) Start(ctx context.Context, s *starting) (App, error) {
	e := s.rc.Exec
	if e == nil || len(e.Command) == 0 {
		return nil, errcat.Config.Newf("run configuration %s has no exec.command", s.rc.Name)
	}
	inj, err := s.prepare(ctx, r)
	if err != nil {
		return nil, err
	}
	spec := processSpec(s.m.Workspace.Dir, s.rc, append([]string(nil), e.Command...), inj)
	if strings.Contains(spec.Argv[0], "/") && !filepath.IsAbs(spec.Argv[0]) {
		spec.Argv[0] = filepath.Join(spec.Dir, spec.Argv[0])
	}
	return startProcess(ctx, s, spec, "")
}

// Prepare returns the proxy environment and the lane's and the exposed
// ports' variables (debug is for java only).
func (execRuntime) Prepare(_ context.Context, _ *workspace.RunConfig, ic *Interconnect, _ bool) (Injected, error) {
	if ic == nil {
		return Injected{}, nil
	}
	inj := Injected{Env: ic.ProxyEnv()}
	_, env := ic.settings()
	for k, v := range env {
		inj.Env[k] = v
	}
	return inj, nil
}
