package launch

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/internal/connset"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/internal/peercred"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/workspace"
)

// Forward is a loopback port forwarded through a tunnel to host:port in the
// private network: what a debugger attaches to (JDWP has no
// authentication, so only sockets of the same OS user are let in).
type Forward struct {
	ID           string
	LocalAddress string
	Target       string

	tun     tunnel.Tunnel
	ownTun  bool
	ln      net.Listener
	log     *slog.Logger
	unwatch func()
	once    sync.Once
	done    chan struct{}
	wg      sync.WaitGroup
	conns   connset.Set
}

// OpenForward opens a tunnel to px and a loopback listener (localPort 0 =
// any free port) forwarding to host:port on the far side.
func OpenForward(ctx context.Context, dir string, px *workspace.Proxy, host string, port, localPort int, h Hooks) (*Forward, error) {
	tun, err := OpenTunnel(ctx, dir, px, h)
	if err != nil {
		return nil, err
	}
	f, err := newForward(tun, host, port, localPort, h.logger().With("proxy", px.Name))
	if err != nil {
		tun.Close()
		return nil, err
	}
	f.ownTun = true
	return f, nil
}

func newForward(tun tunnel.Tunnel, host string, port, localPort int, log *slog.Logger) (*Forward, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(localPort)))
	if err != nil {
		return nil, errcat.Environment.Newf("local port %d: %w (is it in use? choose another localPort)", localPort, err)
	}
	f := &Forward{ID: newID("f-"), LocalAddress: ln.Addr().String(), Target: net.JoinHostPort(host, strconv.Itoa(port)),
		tun: tun, ln: ln, log: log, done: make(chan struct{})}
	// A tunnel that is closed for good takes the forward with it.
	f.unwatch = tun.Watch(func(e tunnel.Event) {
		if e.State == tunnel.Closed {
			go f.Close()
		}
	})
	f.wg.Add(1)
	go f.accept()
	log.Info("forward open", "local", f.LocalAddress, "target", f.Target)
	return f, nil
}

func (f *Forward) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !peercred.SameUser(c) {
			f.log.Warn("forward: refused a connection from another user", "client", c.RemoteAddr().String())
			c.Close()
			continue
		}
		if !f.conns.Add(c) {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.conns.Remove(c)
			up, err := f.tun.Dial(context.Background(), "tcp", f.Target)
			if err != nil {
				f.log.Warn("forward: dial failed", "target", f.Target, "err", err)
				c.Close()
				return
			}
			channel.Splice(c, up)
		}()
	}
}

// Done is closed when the forward is closed.
func (f *Forward) Done() <-chan struct{} { return f.done }

// Close stops listening, ends the forwarded connections and closes the
// tunnel it opened.
func (f *Forward) Close() error {
	f.once.Do(func() {
		f.unwatch()
		f.ln.Close()
		f.conns.CloseAll()
		if f.ownTun {
			f.tun.Close()
		}
		f.wg.Wait()
		close(f.done)
	})
	return nil
}

// DebugForward opens a forward for the IDE (debug/forward); it lives until
// Unforward or CloseAll.
func (m *Manager) DebugForward(ctx context.Context, proxy, host string, port int) (protocol.DebugForwardResult, error) {
	s, err := m.Workspace.Load()
	if err != nil {
		return protocol.DebugForwardResult{}, err
	}
	px, ok := s.File.Proxy(proxy)
	if !ok {
		return protocol.DebugForwardResult{}, fmt.Errorf("no proxy named %q: %w", proxy, workspace.ErrNotFound)
	}
	f, err := OpenForward(ctx, m.Workspace.Dir, px, host, port, 0, m.Hooks)
	if err != nil {
		return protocol.DebugForwardResult{}, err
	}
	if !m.keep(func() { m.forwards[f.ID] = f }) {
		f.Close()
		return protocol.DebugForwardResult{}, errGoingAway()
	}
	go func() {
		<-f.Done()
		m.mu.Lock()
		delete(m.forwards, f.ID)
		m.mu.Unlock()
	}()
	return protocol.DebugForwardResult{LocalAddress: f.LocalAddress, ForwardID: f.ID}, nil
}

// Unforward closes a forward.
func (m *Manager) Unforward(id string) error {
	m.mu.Lock()
	f := m.forwards[id]
	m.mu.Unlock()
	if f == nil {
		return fmt.Errorf("forward %q: %w", id, ErrUnknownSession)
	}
	return f.Close()
}
