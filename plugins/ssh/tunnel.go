package ssh

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/internal/relay"
	"github.com/tether-dev/tether/tunnel"
)

// ciphers prefers AES-GCM: about twice the throughput of chacha20 on amd64.
var ciphers = []string{
	ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305,
	ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR,
}

const (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// ErrClosed is returned by calls on a closed Tunnel (an environment error:
// the tunnel went away under the caller).
var ErrClosed = errcat.Environment.New("tunnel closed")

// ErrConnectionLost is returned by reads and writes of a stream whose SSH
// connection died (instead of a misleading io.EOF). An environment error.
var ErrConnectionLost = errcat.Environment.New("ssh connection to the proxy machine lost")

// Tunnel is a tunnel.Tunnel over a pool of SSH connections.
type Tunnel struct {
	cfg  *resolved
	auth *auth
	hk   *hostKeys
	side string // for DialError.Side

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine we start

	emitMu sync.Mutex // held while a state change is decided and delivered, keeps events ordered

	mu        sync.Mutex
	state     tunnel.State
	closed    bool
	lastErr   error
	live      []*conn
	changed   chan struct{} // closed and replaced whenever live changes
	watchers  map[int]func(tunnel.Event)
	nextWatch int
	streams   map[*stream]struct{}
	listeners map[*listener]struct{}
	rr        int // round-robin start of pick
}

var _ tunnel.Tunnel = (*Tunnel)(nil)

// Open connects to the proxy machine and returns a Connected tunnel. The
// first connection is made before Open returns, so host key and
// authentication problems are reported here; the rest of the pool connects
// in the background.
func Open(ctx context.Context, cfg Config) (*Tunnel, error) {
	r, err := resolve(cfg) // config errors
	if err != nil {
		return nil, err
	}
	t := &Tunnel{
		cfg:  r,
		auth: &auth{cfg: r},
		hk: &hostKeys{file: r.KnownHostsFile, strict: r.StrictHostKeyChecking, prompts: r.Prompts,
			progress: r.Progress, accepted: map[string]string{}},
		side:      "the proxy machine " + r.target.Host,
		state:     tunnel.Connecting,
		changed:   make(chan struct{}),
		watchers:  map[int]func(tunnel.Event){},
		streams:   map[*stream]struct{}{},
		listeners: map[*listener]struct{}{},
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.progress("Connecting to " + r.target.addr())
	first, err := t.connect(ctx)
	if err != nil {
		t.cancel()
		return nil, err
	}
	t.addLive(first)
	t.wg.Add(r.PoolSize)
	go t.runSlot(first)
	for i := 1; i < r.PoolSize; i++ {
		go t.runSlot(nil)
	}
	return t, nil
}

func (t *Tunnel) progress(msg string) {
	if t.cfg.Progress != nil {
		t.cfg.Progress(msg)
	}
}

// conn is one SSH connection of the pool.
type conn struct {
	client  *ssh.Client
	closers []io.Closer // jump host clients, closed after client
	tc      *trackedConn
	active  atomic.Int64 // open streams
	done    chan struct{}
	once    sync.Once
	err     error // why it died; set before done is closed
}

func (c *conn) kill(err error) {
	c.once.Do(func() {
		c.err = err
		c.tc.fail(err)
		close(c.done)
		c.client.Close()
		for i := len(c.closers) - 1; i >= 0; i-- {
			c.closers[i].Close()
		}
	})
}

func (c *conn) dead() bool {
	select {
	case <-c.done:
		return true
	default:
		return c.tc.failed() != nil
	}
}

// trackedConn records the first transport error before the SSH layer sees
// it, so that streams can tell a lost connection from a clean EOF.
//
// It also reads ahead: x/crypto/ssh reads every packet through a 4 KiB
// bufio.Reader, which costs two or three read(2) calls per 32 KiB data packet.
// With a large read-ahead one read(2) fetches whatever the kernel holds
// (several packets under load) and the SSH layer's reads become copies.
type trackedConn struct {
	net.Conn
	br  *bufio.Reader // reads tc.Conn; used only by the SSH transport's reader
	mu  sync.Mutex
	err error
}

// readAhead is the read-ahead buffer of one SSH connection.
const readAhead = 256 << 10

func newTrackedConn(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c}
	tc.br = bufio.NewReaderSize(c, readAhead)
	return tc
}

func (tc *trackedConn) fail(err error) {
	tc.mu.Lock()
	if tc.err == nil {
		tc.err = err
	}
	tc.mu.Unlock()
}

func (tc *trackedConn) failed() error {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.err
}

// Read returns read-ahead bytes first; a transport error is recorded when it
// reaches the SSH layer, after every byte received before it.
func (tc *trackedConn) Read(b []byte) (int, error) {
	n, err := tc.br.Read(b)
	if err != nil {
		tc.fail(err)
	}
	return n, err
}

func (tc *trackedConn) Write(b []byte) (int, error) {
	n, err := tc.Conn.Write(b)
	if err != nil {
		tc.fail(err)
	}
	return n, err
}

// connect dials the jump chain and the target.
func (t *Tunnel) connect(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout)
	defer cancel()
	hops := append(append([]hop(nil), t.cfg.jumps...), t.cfg.target)
	var (
		prev    *ssh.Client
		closers []io.Closer
		tc      *trackedConn
	)
	fail := func(err error) (*conn, error) {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i].Close()
		}
		return nil, err
	}
	for i, h := range hops {
		addr := h.addr()
		via := ""
		if i > 0 {
			via = " via " + hops[i-1].addr()
		}
		var raw net.Conn
		var err error
		if prev == nil && t.cfg.Dial != nil {
			raw, err = t.cfg.Dial(ctx)
		} else if prev == nil {
			var d net.Dialer
			raw, err = d.DialContext(ctx, "tcp", addr)
		} else {
			raw, err = prev.DialContext(ctx, "tcp", addr)
		}
		if err != nil {
			return fail(errcat.Environment.Newf("connect to %s%s: %w", addr, via, err))
		}
		methods, authDone, err := t.auth.methods(ctx, h)
		if err != nil {
			raw.Close()
			return fail(errcat.Environment.Newf("%s@%s: %w", h.User, addr, err)) // config errors keep their tag
		}
		tc = newTrackedConn(raw)
		cc := &ssh.ClientConfig{
			User:   h.User,
			Auth:   methods,
			Config: ssh.Config{Ciphers: ciphers},
		}
		if i == len(hops)-1 && t.cfg.HostKey != nil {
			cc.HostKeyCallback = ssh.FixedHostKey(t.cfg.HostKey)
			cc.HostKeyAlgorithms = pinnedAlgorithms(t.cfg.HostKey)
		} else {
			cc.HostKeyCallback = t.hk.callback(ctx, addr)
			cc.HostKeyAlgorithms = t.hk.algorithms(addr)
		}
		stop := context.AfterFunc(ctx, func() { raw.Close() })
		sc, chans, reqs, err := ssh.NewClientConn(tc, addr, cc)
		stopped := stop()
		authDone()
		if err != nil {
			raw.Close()
			if !stopped && ctx.Err() != nil {
				err = ctx.Err()
			}
			// The handshake keeps the host key callback's error (and its
			// tag) in the chain; everything else is the server's answer.
			if errors.Is(err, ErrHostKeyChanged) || errors.Is(err, ErrHostKeyUnknown) || errors.Is(err, ErrAuth) {
				return fail(errcat.Environment.Newf("ssh %s@%s%s: %w", h.User, addr, via, err))
			}
			if strings.Contains(err.Error(), "unable to authenticate") {
				return fail(errcat.Environment.Newf("ssh %s@%s%s: %w: %v", h.User, addr, via, ErrAuth, err))
			}
			return fail(errcat.Environment.Newf("ssh %s@%s%s: %w", h.User, addr, via, err))
		}
		client := ssh.NewClient(sc, chans, reqs)
		closers = append(closers, client)
		prev = client
	}
	return &conn{client: prev, closers: closers[:len(closers)-1], tc: tc, done: make(chan struct{})}, nil
}

// runSlot keeps one pool connection alive: monitor it, and when it dies
// reconnect with capped exponential backoff.
func (t *Tunnel) runSlot(c *conn) {
	defer t.wg.Done()
	backoff := minBackoff
	for {
		if c == nil {
			var err error
			c, err = t.connect(t.ctx)
			if err != nil {
				if t.ctx.Err() != nil {
					return
				}
				t.setLastErr(err)
				t.progress(fmt.Sprintf("Reconnect to %s failed (retrying in %v): %v", t.cfg.target.addr(), backoff, err))
				select {
				case <-t.ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, maxBackoff)
				continue
			}
			backoff = minBackoff
			if !t.addLive(c) {
				c.kill(ErrClosed)
				return
			}
		}
		t.monitor(c)
		t.removeLive(c)
		c = nil
		if t.ctx.Err() != nil {
			return
		}
	}
}

// monitor returns when c is dead: the transport failed, keepalives went
// unanswered for KeepaliveTimeout, or the tunnel was closed.
func (t *Tunnel) monitor(c *conn) {
	var lastAnswer atomic.Int64
	lastAnswer.Store(time.Now().UnixNano())
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		err := c.client.Wait()
		if err == nil {
			err = io.EOF
		}
		c.kill(fmt.Errorf("%w: %v", ErrConnectionLost, err))
	}()
	go func() {
		defer t.wg.Done()
		for {
			// OpenSSH answers unknown global requests with a failure: any
			// answer proves the peer is alive.
			if _, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil); err != nil {
				return
			}
			lastAnswer.Store(time.Now().UnixNano())
			select {
			case <-c.done:
				return
			case <-time.After(t.cfg.KeepaliveInterval):
			}
		}
	}()
	tick := time.NewTicker(t.cfg.KeepaliveInterval / 4)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.ctx.Done():
			c.kill(ErrClosed)
			return
		case <-tick.C:
			if since := time.Since(time.Unix(0, lastAnswer.Load())); since > t.cfg.KeepaliveTimeout {
				c.kill(fmt.Errorf("%w: no keepalive answer for %v", ErrConnectionLost, since.Round(100*time.Millisecond)))
			}
		}
	}
}

func (t *Tunnel) setLastErr(err error) {
	t.mu.Lock()
	t.lastErr = err
	t.mu.Unlock()
}

// transition runs change under mu and delivers the resulting event, if any,
// in order.
func (t *Tunnel) transition(change func() (tunnel.State, error, bool)) {
	t.emitMu.Lock()
	defer t.emitMu.Unlock()
	t.mu.Lock()
	old := t.state
	s, err, ok := change()
	var fns []func(tunnel.Event)
	if ok && s != old {
		t.state = s
		for _, fn := range t.watchers {
			fns = append(fns, fn)
		}
	} else {
		ok = false
	}
	t.mu.Unlock()
	if !ok {
		return
	}
	ev := tunnel.Event{State: s, Err: err, Time: time.Now()}
	for _, fn := range fns {
		fn(ev)
	}
}

func (t *Tunnel) broadcastLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *Tunnel) addLive(c *conn) bool {
	added := false
	t.transition(func() (tunnel.State, error, bool) {
		if t.closed {
			return "", nil, false
		}
		added = true
		t.live = append(t.live, c)
		t.broadcastLocked()
		return tunnel.Connected, nil, true
	})
	if added {
		t.progress("Connected to " + t.cfg.target.addr())
	}
	return added
}

func (t *Tunnel) removeLive(c *conn) {
	t.transition(func() (tunnel.State, error, bool) {
		for i, l := range t.live {
			if l == c {
				t.live = append(t.live[:i], t.live[i+1:]...)
				break
			}
		}
		if t.closed || len(t.live) > 0 {
			return "", nil, false
		}
		t.lastErr = c.err
		t.broadcastLocked()
		return tunnel.Reconnecting, c.err, true
	})
	if t.ctx.Err() == nil {
		t.progress(fmt.Sprintf("Lost a connection to %s: %v", t.cfg.target.addr(), c.err))
	}
}

// pick returns the least-loaded live connection, waiting (bounded by ctx)
// while the tunnel reconnects. With reserve, the stream is counted on the
// connection (c.active) before t.mu is released: concurrent dials then see
// each other and spread over the pool (4 parallel bulk streams land on 4
// connections, each with its own flow-control window and sshd process),
// instead of all reading the same counts and piling onto the first one.
// Ties go round-robin.
func (t *Tunnel) pick(ctx context.Context, reserve bool) (*conn, error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, ErrClosed
		}
		var best *conn
		var bestN int64
		n := len(t.live)
		for i := range n {
			c := t.live[(t.rr+i)%n]
			if c.dead() {
				continue
			}
			if a := c.active.Load(); best == nil || a < bestN {
				best, bestN = c, a
			}
		}
		if best != nil {
			t.rr++
			if reserve {
				best.active.Add(1)
			}
		}
		changed, lastErr := t.changed, t.lastErr
		t.mu.Unlock()
		if best != nil {
			return best, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if lastErr != nil {
				return nil, errcat.Environment.Newf("waiting for the tunnel to reconnect: %w (last error: %v)", ctx.Err(), lastErr)
			}
			return nil, errcat.Environment.Newf("waiting for the tunnel to reconnect: %w", ctx.Err())
		}
	}
}

// Dial opens a stream to address from the proxy machine (direct-tcpip; the
// host name is resolved there).
func (t *Tunnel) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	derr := func(r tunnel.Reason, err error) error {
		return &tunnel.DialError{Address: address, Reason: r, Side: t.side, Err: err}
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, derr(tunnel.Other, fmt.Errorf("network %q not supported", network)) // a caller's bug
	}
	_, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, derr(tunnel.Other, errcat.User.Wrap(err))
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, derr(tunnel.Other, errcat.User.Newf("bad port %q", port))
	}
	for {
		c, err := t.pick(ctx, true)
		if err != nil {
			return nil, derr(tunnel.TunnelDown, err)
		}
		ch, err := c.client.DialContext(ctx, "tcp", address)
		if err == nil {
			s := &stream{Conn: ch, c: c, t: t}
			t.mu.Lock()
			if t.closed {
				t.mu.Unlock()
				s.Close()
				return nil, derr(tunnel.TunnelDown, ErrClosed)
			}
			t.streams[s] = struct{}{}
			t.mu.Unlock()
			return s, nil
		}
		c.active.Add(-1)
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			return nil, derr(classify(oce), errcat.Environment.New(oce.Message))
		}
		if ctx.Err() != nil {
			return nil, derr(tunnel.Unreachable, errcat.Environment.Newf("no answer before %w", ctx.Err()))
		}
		if c.dead() {
			continue // the connection died under us: try the next one
		}
		return nil, derr(tunnel.Other, errcat.Environment.Wrap(err))
	}
}

// classify maps OpenSSH's channel open failures. sshd answers every failed
// direct-tcpip connect with reason "connect failed" and a message: the
// strerror of connect(2) ("Connection refused", "No route to host",
// "Connection timed out") or gai_strerror ("Name or service not known",
// "Temporary failure in name resolution").
func classify(oce *ssh.OpenChannelError) tunnel.Reason {
	if oce.Reason == ssh.Prohibited {
		return tunnel.Other
	}
	m := strings.ToLower(oce.Message)
	switch {
	case strings.Contains(m, "refused"):
		return tunnel.Refused
	case strings.Contains(m, "not known"), strings.Contains(m, "name resolution"),
		strings.Contains(m, "no address associated"), strings.Contains(m, "nodename nor servname"),
		strings.Contains(m, "unknown host"), strings.Contains(m, "no such host"):
		return tunnel.NoSuchHost
	case strings.Contains(m, "unreachable"), strings.Contains(m, "no route"),
		strings.Contains(m, "timed out"), strings.Contains(m, "timeout"):
		return tunnel.Unreachable
	}
	return tunnel.Other
}

// stream is one dialled connection.
type stream struct {
	net.Conn
	c    *conn
	t    *Tunnel
	once sync.Once
}

func (s *stream) lost(err error) error {
	if err == nil {
		return nil
	}
	if cerr := s.c.tc.failed(); cerr != nil {
		return fmt.Errorf("%w: %v", ErrConnectionLost, cerr)
	}
	return err
}

func (s *stream) Read(b []byte) (int, error) {
	n, err := s.Conn.Read(b)
	return n, s.lost(err)
}

func (s *stream) Write(b []byte) (int, error) {
	n, err := s.Conn.Write(b)
	return n, s.lost(err)
}

func (s *stream) Close() error {
	var err error
	s.once.Do(func() {
		err = s.Conn.Close()
		s.c.active.Add(-1)
		s.t.mu.Lock()
		delete(s.t.streams, s)
		s.t.mu.Unlock()
	})
	return err
}

// CloseWrite half-closes the stream (sends EOF to the far side).
func (s *stream) CloseWrite() error { return relay.CloseWrite(s.Conn) }

// State reports the current state.
func (t *Tunnel) State() tunnel.State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

// Watch calls fn for every state change until cancel is called.
func (t *Tunnel) Watch(fn func(tunnel.Event)) (cancel func()) {
	t.mu.Lock()
	id := t.nextWatch
	t.nextWatch++
	t.watchers[id] = fn
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.watchers, id)
		t.mu.Unlock()
	}
}

// Close closes every stream, listener and connection and waits for the
// tunnel's goroutines.
func (t *Tunnel) Close() error {
	var (
		live      []*conn
		streams   []*stream
		listeners []*listener
	)
	wasOpen := false
	t.transition(func() (tunnel.State, error, bool) {
		if t.closed {
			return "", nil, false
		}
		wasOpen = true
		t.closed = true
		live = t.live
		t.live = nil
		for s := range t.streams {
			streams = append(streams, s)
		}
		for l := range t.listeners {
			listeners = append(listeners, l)
		}
		t.broadcastLocked()
		return tunnel.Closed, nil, true
	})
	if !wasOpen {
		return nil
	}
	t.cancel()
	for _, l := range listeners {
		l.Close()
	}
	for _, s := range streams {
		s.Close()
	}
	for _, c := range live {
		c.kill(ErrClosed)
	}
	t.wg.Wait()
	return nil
}
