// Package agent is the cloud side of Tether: the code of the tether-agent
// binary. Its core is a small SSH server that only forwards TCP (direct-tcpip
// and tcpip-forward) for Tether's SSH tunnel; the same server runs on a proxy
// machine, inside a temporary Kubernetes pod and in the Docker-mode sidecar.
//
// Sandbox is a "private network" that exists only inside the agent, for a
// demo that needs no infrastructure.
package agent

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/internal/connset"
	"github.com/tether-dev/tether/internal/relay"
)

// ErrIdleExit is returned by ServeSSH when no client was connected for
// SSHServerConfig.IdleExit.
var ErrIdleExit = errors.New("no SSH client connected: idle exit")

// Ciphers is the server's cipher list. AES-GCM comes first: about twice the
// throughput of chacha20-poly1305 on CPUs with AES instructions.
var Ciphers = []string{
	ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305,
	ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR,
}

// ServerVersion is the SSH identification string of the agent.
const ServerVersion = "SSH-2.0-TetherAgent_1"

const (
	handshakeTimeout   = 20 * time.Second
	dialTimeout        = 30 * time.Second
	defaultAlive       = 15 * time.Second
	aliveCountMax      = 3
	copyBufSize        = 32 << 10
	maxAcceptBackoff   = time.Second
	forwardChannelType = "forwarded-tcpip"
)

// SSHServerConfig configures ServeSSH.
type SSHServerConfig struct {
	HostKey        ssh.Signer
	AuthorizedKeys []ssh.PublicKey // public-key authentication only; the user name is not checked
	// IdleExit makes ServeSSH return ErrIdleExit when no client has been
	// connected for this long (counted from the start, and from the moment
	// the last client left); 0 = never.
	IdleExit time.Duration
	// Dial connects direct-tcpip channels; nil = net.Dialer. Host names are
	// resolved by it. Errors become channel open failures with OpenSSH's
	// messages (see RejectError for full control).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Listen binds tcpip-forward requests; nil = net.Listen.
	Listen func(network, addr string) (net.Listener, error)
	// ClientAliveInterval is how often the server checks that a client
	// answers (keepalive@openssh.com); a client that misses three answers in
	// a row is disconnected. 0 = 15s; negative = off.
	ClientAliveInterval time.Duration
	// Requests answers extra global requests by name (e.g.
	// agentproto.DataTokenRequest); the reply is sent when one is wanted.
	Requests map[string]func(payload []byte) (ok bool, reply []byte)
	Logger   *slog.Logger // nil = discard
}

// RejectError is an error that a Dial function returns to choose the
// channel open failure sent to the client.
type RejectError struct {
	Reason  ssh.RejectionReason
	Message string
}

func (e *RejectError) Error() string { return e.Message }

// ServeSSH accepts SSH connections on ln until ctx is done (it then returns
// nil) or the idle exit fires (ErrIdleExit). It closes ln, every connection,
// channel and forwarded listener it started, and waits for its goroutines
// before returning. A failing listener is reported as an error.
func ServeSSH(ctx context.Context, ln net.Listener, cfg SSHServerConfig) error {
	if cfg.HostKey == nil {
		ln.Close()
		return errors.New("agent: no host key")
	}
	if len(cfg.AuthorizedKeys) == 0 {
		ln.Close()
		return errors.New("agent: no authorized keys")
	}
	s := newServer(cfg)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.cancel = cancel
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	s.startIdle()

	var acceptErr error
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				acceptErr = err
				break
			}
			s.log.Warn("accept failed", "err", err, "retry", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxAcceptBackoff)
			continue
		}
		backoff = 5 * time.Millisecond
		if !s.conns.Add(c) {
			break
		}
		s.wg.Go(func() { s.handleConn(ctx, c) })
	}
	ln.Close()
	s.shutdown()
	s.wg.Wait()
	if acceptErr != nil {
		return fmt.Errorf("agent: accept: %w", acceptErr)
	}
	if cause := context.Cause(ctx); errors.Is(cause, ErrIdleExit) {
		return ErrIdleExit
	}
	return nil
}

type server struct {
	cfg    SSHServerConfig
	sc     *ssh.ServerConfig
	log    *slog.Logger
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	conns     connset.Set
	clients   int
	idleSince time.Time
	idleTimer *time.Timer
}

func newServer(cfg SSHServerConfig) *server {
	s := &server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cfg.Dial == nil {
		var d net.Dialer
		s.cfg.Dial = d.DialContext
	}
	if s.cfg.Listen == nil {
		s.cfg.Listen = net.Listen
	}
	if s.cfg.ClientAliveInterval == 0 {
		s.cfg.ClientAliveInterval = defaultAlive
	}
	authorized := make([][]byte, len(cfg.AuthorizedKeys))
	for i, k := range cfg.AuthorizedKeys {
		authorized[i] = k.Marshal()
	}
	s.sc = &ssh.ServerConfig{
		Config:        ssh.Config{Ciphers: Ciphers},
		ServerVersion: ServerVersion,
		MaxAuthTries:  6,
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			kb := key.Marshal()
			ok := 0
			for _, a := range authorized {
				ok |= subtle.ConstantTimeCompare(kb, a)
			}
			if ok != 1 {
				return nil, errors.New("public key not authorized")
			}
			return &ssh.Permissions{Extensions: map[string]string{"pubkey-fp": ssh.FingerprintSHA256(key)}}, nil
		},
		// No PasswordCallback or KeyboardInteractiveCallback: those methods
		// are refused.
	}
	s.sc.AddHostKey(cfg.HostKey)
	return s
}

func (s *server) shutdown() {
	s.mu.Lock()
	s.closed = true
	if s.idleTimer != nil {
		s.idleTimer.Stop()
	}
	s.mu.Unlock()
	s.conns.CloseAll()
}

// Idle exit.

func (s *server) startIdle() {
	if s.cfg.IdleExit <= 0 {
		return
	}
	s.mu.Lock()
	s.idleSince = time.Now()
	s.idleTimer = time.AfterFunc(s.cfg.IdleExit, s.idleCheck)
	s.mu.Unlock()
}

func (s *server) idleCheck() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.clients > 0 {
		return
	}
	if left := s.cfg.IdleExit - time.Since(s.idleSince); left > 0 {
		s.idleTimer.Reset(left) // a client came and went since the timer was set
		return
	}
	s.log.Info("no client connected: exiting", "idle", s.cfg.IdleExit)
	s.cancel(ErrIdleExit)
}

func (s *server) clientUp() {
	s.mu.Lock()
	s.clients++
	if s.idleTimer != nil {
		s.idleTimer.Stop()
	}
	s.mu.Unlock()
}

func (s *server) clientDown() {
	s.mu.Lock()
	s.clients--
	if s.clients == 0 && s.idleTimer != nil && !s.closed {
		s.idleSince = time.Now()
		s.idleTimer.Reset(s.cfg.IdleExit)
	}
	s.mu.Unlock()
}

// One SSH connection.

type client struct {
	s    *server
	ctx  context.Context // cancelled when the connection ends
	conn *ssh.ServerConn
	log  *slog.Logger
	wg   sync.WaitGroup

	mu       sync.Mutex
	done     bool
	forwards map[*forward]struct{}
}

func (s *server) handleConn(ctx context.Context, raw net.Conn) {
	defer s.conns.Remove(raw)
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(raw, s.sc)
	if err != nil {
		s.log.Debug("SSH handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	raw.SetDeadline(time.Time{})
	s.clientUp()
	defer s.clientDown()
	log := s.log.With("remote", raw.RemoteAddr().String())
	log.Info("client connected", "user", sconn.User(), "key", sconn.Permissions.Extensions["pubkey-fp"])

	cctx, ccancel := context.WithCancel(ctx)
	c := &client{s: s, ctx: cctx, conn: sconn, log: log, forwards: map[*forward]struct{}{}}
	c.wg.Go(func() { c.globalRequests(reqs) })
	if s.cfg.ClientAliveInterval > 0 {
		c.wg.Go(c.keepalive)
	}
	for nc := range chans {
		switch nc.ChannelType() {
		case "direct-tcpip":
			c.wg.Go(func() { c.directTCPIP(nc) })
		case "session":
			nc.Reject(ssh.Prohibited, "the Tether agent has no shell: only TCP forwarding is allowed")
		default:
			nc.Reject(ssh.UnknownChannelType, "unknown channel type "+strconv.Quote(nc.ChannelType()))
		}
	}
	// The connection is closed (chans is closed by the SSH library).
	ccancel()
	sconn.Close()
	c.closeForwards()
	c.wg.Wait()
	err = sconn.Wait()
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		log.Info("client disconnected")
	} else {
		log.Info("client disconnected", "err", err)
	}
}

// keepalive disconnects a client that stops answering (a dead laptop behind
// a port-forward or NAT would otherwise keep the agent from idle-exiting).
func (c *client) keepalive() {
	interval := c.s.cfg.ClientAliveInterval
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		kill := time.AfterFunc(interval*aliveCountMax, func() {
			c.log.Warn("client stopped answering keepalives: disconnecting")
			c.conn.Close()
		})
		// Any answer (OpenSSH and x/crypto answer failure) proves the peer alive.
		_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
		kill.Stop()
		if err != nil {
			return
		}
	}
}

func (c *client) globalRequests(reqs <-chan *ssh.Request) {
	for r := range reqs {
		switch r.Type {
		case "tcpip-forward":
			ok, payload := c.tcpipForward(r.Payload)
			r.Reply(ok, payload)
		case "cancel-tcpip-forward":
			r.Reply(c.cancelForward(r.Payload), nil)
		default:
			if h, ok := c.s.cfg.Requests[r.Type]; ok {
				ok, payload := h(r.Payload)
				if r.WantReply {
					r.Reply(ok, payload)
				}
				continue
			}
			// keepalive@openssh.com and anything unknown: OpenSSH clients
			// take a failure reply as proof of life.
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}
}

// directTCPIP handles a direct-tcpip channel (RFC 4254 7.2).
func (c *client) directTCPIP(nc ssh.NewChannel) {
	var p struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil || p.Port > 65535 {
		nc.Reject(ssh.ConnectionFailed, "bad direct-tcpip request")
		return
	}
	addr := net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port)))
	ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
	conn, err := c.s.cfg.Dial(ctx, "tcp", addr)
	cancel()
	if err != nil {
		reason, msg := rejection(err)
		c.log.Debug("direct-tcpip failed", "addr", addr, "err", err, "reply", msg)
		nc.Reject(reason, msg)
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	c.log.Debug("direct-tcpip", "addr", addr)
	pipe(ch, reqs, conn)
}

// Forwarding: tcpip-forward and cancel-tcpip-forward (RFC 4254 7.1).

type forward struct {
	bindAddr      string // as requested: sent back in forwarded-tcpip
	requestedPort uint32
	port          uint32 // bound
	ln            net.Listener
}

type forwardRequest struct {
	BindAddr string
	BindPort uint32
}

func (c *client) tcpipForward(payload []byte) (bool, []byte) {
	var req forwardRequest
	if err := ssh.Unmarshal(payload, &req); err != nil || req.BindPort > 65535 {
		return false, nil
	}
	host := req.BindAddr
	if host == "*" { // OpenSSH: all addresses; "" also means all
		host = ""
	}
	ln, err := c.s.cfg.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(int(req.BindPort))))
	if err != nil {
		c.log.Info("tcpip-forward failed", "addr", req.BindAddr, "port", req.BindPort, "err", err)
		return false, nil
	}
	port := req.BindPort
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		port = uint32(ta.Port)
	} else if _, ps, err := net.SplitHostPort(ln.Addr().String()); err == nil {
		if n, err := strconv.Atoi(ps); err == nil {
			port = uint32(n)
		}
	}
	f := &forward{bindAddr: req.BindAddr, requestedPort: req.BindPort, port: port, ln: ln}
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		ln.Close()
		return false, nil
	}
	c.forwards[f] = struct{}{}
	c.mu.Unlock()
	c.log.Info("tcpip-forward", "addr", req.BindAddr, "port", port)
	c.wg.Go(func() { c.acceptForwarded(f) })
	if req.BindPort == 0 {
		return true, ssh.Marshal(struct{ Port uint32 }{port})
	}
	return true, nil
}

func (c *client) cancelForward(payload []byte) bool {
	var req forwardRequest
	if err := ssh.Unmarshal(payload, &req); err != nil {
		return false
	}
	c.mu.Lock()
	var found *forward
	for f := range c.forwards {
		if f.bindAddr == req.BindAddr && (f.port == req.BindPort || (req.BindPort != 0 && f.requestedPort == req.BindPort)) {
			found = f
			break
		}
	}
	if found != nil {
		delete(c.forwards, found)
	}
	c.mu.Unlock()
	if found == nil {
		return false
	}
	found.ln.Close()
	c.log.Info("cancel-tcpip-forward", "addr", req.BindAddr, "port", found.port)
	return true
}

func (c *client) closeForwards() {
	c.mu.Lock()
	c.done = true
	fs := c.forwards
	c.forwards = nil
	c.mu.Unlock()
	for f := range fs {
		f.ln.Close()
	}
}

func (c *client) acceptForwarded(f *forward) {
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			c.mu.Lock()
			_, active := c.forwards[f]
			delete(c.forwards, f)
			c.mu.Unlock()
			if active {
				f.ln.Close()
				c.log.Warn("forwarded listener failed", "port", f.port, "err", err)
			}
			return
		}
		c.wg.Go(func() { c.openForwarded(f, conn) })
	}
}

func (c *client) openForwarded(f *forward, conn net.Conn) {
	origin, oport := "0.0.0.0", uint32(1)
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		origin, oport = ta.IP.String(), uint32(ta.Port)
	}
	payload := ssh.Marshal(struct {
		Addr       string
		Port       uint32
		OriginAddr string
		OriginPort uint32
	}{f.bindAddr, f.port, origin, oport})
	ch, reqs, err := c.conn.OpenChannel(forwardChannelType, payload)
	if err != nil {
		c.log.Debug("forwarded-tcpip refused by client", "port", f.port, "err", err)
		conn.Close()
		return
	}
	pipe(ch, reqs, conn)
}

// pipe carries an SSH channel to a connection both ways (package relay),
// and returns when both are closed.
func pipe(ch ssh.Channel, reqs <-chan *ssh.Request, conn net.Conn) {
	toConn := &writeEnd{Conn: conn, done: make(chan struct{})}
	reqsDone := make(chan struct{})
	go func() {
		defer close(reqsDone)
		for r := range reqs {
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
		// The client closed the channel (or the connection ended): once
		// the data already received is written, stop the other direction.
		<-toConn.done
		conn.Close()
	}()
	relay.Conns(ch, toConn, relay.BufferSize(copyBufSize))
	<-reqsDone
}

// writeEnd is the connection an SSH channel is carried to; done is closed
// once the channel's data has all been written to it (the relay
// half-closes or closes it).
type writeEnd struct {
	net.Conn
	once sync.Once
	done chan struct{}
}

func (w *writeEnd) CloseWrite() error {
	defer w.once.Do(func() { close(w.done) })
	return relay.CloseWrite(w.Conn)
}

func (w *writeEnd) Close() error {
	defer w.once.Do(func() { close(w.done) })
	return w.Conn.Close()
}
