package handlers

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/debugadapter"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/protocol"
)

func init() {
	register(protocol.MethodDebugDAPServer, Method{Async: true, Handle: typed(dapServer)})
}

// dapServers holds each client's endpoint: one per client, closed (with its
// sessions) when the client disconnects.
var dapServers = struct {
	sync.Mutex
	byEnv map[*Env]*dapEndpoint
}{byEnv: map[*Env]*dapEndpoint{}}

type dapEndpoint struct {
	ln     net.Listener
	cancel context.CancelFunc
}

// clientDone is implemented by a Client that knows when it goes away.
type clientDone interface{ Done() <-chan struct{} }

func dapServer(ctx context.Context, env *Env, p *protocol.DAPServerParams) (any, error) {
	dapServers.Lock()
	defer dapServers.Unlock()
	if ep := dapServers.byEnv[env]; ep != nil {
		return protocol.DAPServerResult{Address: ep.ln.Addr().String()}, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errcat.Environment.Newf("debug/dapServer: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ep := &dapEndpoint{ln: ln, cancel: cancel}
	dapServers.byEnv[env] = ep
	log := env.Log.With("dap", ln.Addr().String())
	if cd, ok := env.Client.(clientDone); ok {
		go func() {
			select {
			case <-cd.Done():
			case <-sctx.Done():
			}
			closeDAPServer(env)
		}()
	} else {
		log.Warn("the DAP endpoint cannot see this client go away; it stays open until the backend exits")
	}
	go acceptDAP(sctx, env, ln, log)
	log.Info("DAP endpoint listening")
	return protocol.DAPServerResult{Address: ln.Addr().String()}, nil
}

func acceptDAP(ctx context.Context, env *Env, ln net.Listener, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Warn("DAP endpoint stopped", "error", err)
			}
			return
		}
		// No credentials in DAP: only this user's processes may connect.
		if !channel.SameUserPeer(c) {
			log.Warn("refused a DAP connection from another user", "peer", c.RemoteAddr().String())
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			log.Info("DAP session started", "peer", c.RemoteAddr().String())
			err := debugadapter.Serve(ctx, c, debugadapter.Config{Workspace: env.Workspace, Prompts: env.Prompts,
				Logger: env.Log.With("dapPeer", c.RemoteAddr().String())})
			log.Info("DAP session ended", "peer", c.RemoteAddr().String(), "error", err)
		}()
	}
}

// closeDAPServer closes a client's endpoint and ends its sessions.
func closeDAPServer(env *Env) {
	dapServers.Lock()
	ep := dapServers.byEnv[env]
	delete(dapServers.byEnv, env)
	dapServers.Unlock()
	if ep != nil {
		ep.cancel()
		_ = ep.ln.Close()
	}
}
