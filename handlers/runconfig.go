package handlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

func init() {
	register(protocol.MethodRunConfigList, Method{Handle: typed(runConfigList)})
	register(protocol.MethodRunConfigGet, Method{Handle: typed(runConfigGet)})
	register(protocol.MethodRunConfigSave, Method{Handle: typed(runConfigSave)})
	register(protocol.MethodRunConfigDelete, Method{Handle: typed(runConfigDelete)})
	register(protocol.MethodRunConfigValidate, Method{Handle: typed(runConfigValidate)})
}

func runConfigList(ctx context.Context, env *Env, p *protocol.RunConfigListParams) (any, error) {
	s, err := env.Workspace.Load()
	if err != nil {
		return nil, err
	}
	return protocol.RunConfigListResult{Configs: nonNil(s.File.Configurations), Revision: s.Revision, Problems: s.Problems}, nil
}

func runConfigGet(ctx context.Context, env *Env, p *protocol.RunConfigGetParams) (any, error) {
	if err := required("name", p.Name); err != nil {
		return nil, err
	}
	s, err := env.Workspace.Load()
	if err != nil {
		return nil, err
	}
	rc, ok := s.File.Config(p.Name)
	if !ok {
		return nil, fmt.Errorf("no run configuration named %q: %w", p.Name, workspace.ErrNotFound)
	}
	return rc, nil
}

func runConfigSave(ctx context.Context, env *Env, p *protocol.RunConfigSaveParams) (any, error) {
	if len(p.Config) == 0 {
		return nil, InvalidParams("config", "required")
	}
	rc, ps, err := workspace.DecodeConfig(p.Config)
	if err != nil {
		return nil, InvalidParams("config", "%v", err)
	}
	if len(ps) > 0 {
		return nil, prefixed("config", ps)
	}
	s, err := env.Workspace.SaveConfig(p.Revision, rc)
	if errors.As(err, &ps) {
		return nil, prefixed("config", ps)
	}
	if err != nil {
		return nil, err
	}
	env.Log.Info("run configuration saved", "name", rc.Name, "revision", s.Revision)
	return protocol.SaveResult{Revision: s.Revision}, nil
}

func runConfigDelete(ctx context.Context, env *Env, p *protocol.RunConfigDeleteParams) (any, error) {
	if err := required("name", p.Name); err != nil {
		return nil, err
	}
	s, err := env.Workspace.DeleteConfig(p.Revision, p.Name)
	if err != nil {
		return nil, err
	}
	return protocol.SaveResult{Revision: s.Revision}, nil
}

func runConfigValidate(ctx context.Context, env *Env, p *protocol.RunConfigValidateParams) (any, error) {
	if len(p.Config) == 0 {
		return nil, InvalidParams("config", "required")
	}
	rc, ps, err := workspace.DecodeConfig(p.Config)
	if err != nil {
		return nil, InvalidParams("config", "%v", err)
	}
	if len(ps) == 0 {
		s, err := env.Workspace.Load()
		if err != nil {
			return nil, err
		}
		ps = s.File.ValidateConfig(&rc)
	}
	return protocol.ValidateResult{Problems: nonNil(ps)}, nil
}

// prefixed reports problems of a sent object as -32602 with the problems in
// data; the paths stay relative to the object.
func prefixed(param string, ps workspace.Problems) error {
	e := AsError(ps)
	e.Message = param + " is invalid: " + ps.Error()
	return e
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
