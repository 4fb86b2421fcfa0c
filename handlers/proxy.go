package handlers

import (
	"context"
	"errors"

	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

func init() {
	register(protocol.MethodProxyList, Method{Handle: typed(proxyList)})
	register(protocol.MethodProxySave, Method{Handle: typed(proxySave)})
	register(protocol.MethodProxyDelete, Method{Handle: typed(proxyDelete)})
	register(protocol.MethodInterconnectSet, Method{Handle: typed(interconnectSet)})
}

func proxyList(ctx context.Context, env *Env, p *protocol.ProxyListParams) (any, error) {
	s, err := env.Workspace.Load()
	if err != nil {
		return nil, err
	}
	return protocol.ProxyListResult{Proxies: nonNil(s.File.Proxies), Revision: s.Revision, Problems: s.Problems}, nil
}

func proxySave(ctx context.Context, env *Env, p *protocol.ProxySaveParams) (any, error) {
	if len(p.Proxy) == 0 {
		return nil, InvalidParams("proxy", "required")
	}
	px, ps, err := workspace.DecodeProxy(p.Proxy)
	if err != nil {
		return nil, InvalidParams("proxy", "%v", err)
	}
	if len(ps) > 0 {
		return nil, prefixed("proxy", ps)
	}
	s, err := env.Workspace.SaveProxy(p.Revision, px)
	if errors.As(err, &ps) {
		return nil, prefixed("proxy", ps)
	}
	if err != nil {
		return nil, err
	}
	env.Log.Info("proxy saved", "name", px.Name, "revision", s.Revision)
	return protocol.SaveResult{Revision: s.Revision}, nil
}

func proxyDelete(ctx context.Context, env *Env, p *protocol.ProxyDeleteParams) (any, error) {
	if err := required("name", p.Name); err != nil {
		return nil, err
	}
	s, err := env.Workspace.DeleteProxy(p.Revision, p.Name)
	if err != nil {
		return nil, err
	}
	return protocol.SaveResult{Revision: s.Revision}, nil
}

// interconnectSet is the IDE toggle on a run configuration.
func interconnectSet(ctx context.Context, env *Env, p *protocol.InterconnectSetParams) (any, error) {
	if err := required("config", p.Config); err != nil {
		return nil, err
	}
	s, err := env.Workspace.SetInterconnect(p.Revision, p.Config, p.Enabled, p.Proxy)
	if err != nil {
		return nil, err
	}
	return protocol.SaveResult{Revision: s.Revision}, nil
}
