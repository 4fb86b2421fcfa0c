package launch

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sort"
	"sync"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/internal/peercred"
	"github.com/tether-dev/tether/protocol"
)

// The DAP endpoint (debug/dapServer): a loopback socket for IDEs that
// prefer one to `tether dap` on stdio. Every connection to it is one DAP
// session. The endpoint and its sessions belong to the Manager: started on
// the first request, closed by CloseAll with the client.

// ServeDAP serves one DAP session on c until it ends or ctx is cancelled.
// The caller provides it (the debug adapter opens its tunnels through this
// package, so this package cannot call it directly).
type ServeDAP func(ctx context.Context, c net.Conn, log *slog.Logger) error

type dapEndpoint struct {
	ln     net.Listener
	ctx    context.Context // cancelled when the endpoint closes
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and the sessions

	mu       sync.Mutex
	sessions map[string]protocol.DAPSessionStatus
}

// DAPServer returns the address of the client's DAP endpoint, listening
// from the first call on; serve serves each connection.
func (m *Manager) DAPServer(serve ServeDAP) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", errGoingAway()
	}
	if m.dap != nil {
		return m.dap.ln.Addr().String(), nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", errcat.Environment.Wrap(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ep := &dapEndpoint{ln: ln, ctx: ctx, cancel: cancel, sessions: map[string]protocol.DAPSessionStatus{}}
	m.dap = ep
	log := m.Hooks.logger().With("dap", ln.Addr().String())
	ep.wg.Go(func() { ep.accept(serve, log) })
	log.Info("DAP endpoint listening")
	return ln.Addr().String(), nil
}

func (ep *dapEndpoint) accept(serve ServeDAP, log *slog.Logger) {
	for {
		c, err := ep.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Warn("DAP endpoint stopped", "error", err)
			}
			return
		}
		// No credentials in DAP: only this user's processes may connect.
		if !peercred.SameUser(c) {
			log.Warn("refused a DAP connection from another user", "peer", c.RemoteAddr().String())
			c.Close()
			continue
		}
		ep.wg.Go(func() { ep.session(c, serve, log) })
	}
}

// session serves one connection, listed in DAPSessions while it lasts.
func (ep *dapEndpoint) session(c net.Conn, serve ServeDAP, log *slog.Logger) {
	defer c.Close()
	stop := context.AfterFunc(ep.ctx, func() { c.Close() })
	defer stop()
	peer := c.RemoteAddr().String()
	st := protocol.DAPSessionStatus{SessionID: newID("d-"), Peer: peer, Since: now()}
	ep.mu.Lock()
	ep.sessions[st.SessionID] = st
	ep.mu.Unlock()
	defer func() {
		ep.mu.Lock()
		delete(ep.sessions, st.SessionID)
		ep.mu.Unlock()
	}()
	log.Info("DAP session started", "peer", peer, "dapSession", st.SessionID)
	err := serve(ep.ctx, c, log.With("dapPeer", peer))
	log.Info("DAP session ended", "peer", peer, "dapSession", st.SessionID, "error", err)
}

// DAPSessions lists the sessions on the client's DAP endpoint, sorted by
// id.
func (m *Manager) DAPSessions() []protocol.DAPSessionStatus {
	m.mu.Lock()
	ep := m.dap
	m.mu.Unlock()
	out := []protocol.DAPSessionStatus{}
	if ep == nil {
		return out
	}
	ep.mu.Lock()
	for _, st := range ep.sessions {
		out = append(out, st)
	}
	ep.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].SessionID < out[j].SessionID })
	return out
}

// closeDAP closes the endpoint and ends its sessions.
func (m *Manager) closeDAP() {
	m.mu.Lock()
	ep := m.dap
	m.dap = nil
	m.mu.Unlock()
	if ep == nil {
		return
	}
	ep.cancel()
	ep.ln.Close()
	ep.wg.Wait()
}
