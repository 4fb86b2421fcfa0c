package channel

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-dev/tether/calls"
	"github.com/tether-dev/tether/internal/connset"
	"github.com/tether-dev/tether/internal/routes"
	"github.com/tether-dev/tether/tunnel"
)

// Route names used in Record.Route.
const (
	RouteTunnel = "tunnel"
	RouteDirect = "direct"
)

// Client names used in Record.Client.
const (
	ClientSOCKS5 = "socks5"
	ClientHTTP   = "http"
)

// maxFailures is how many failed connections Summary keeps.
const maxFailures = 32

// defaultDialTimeout bounds one dial, through the tunnel or direct.
const defaultDialTimeout = 30 * time.Second

// Config says where a Channel sends traffic.
type Config struct {
	// Tunnel carries routed traffic. Targets are dialled with the host name
	// unresolved: the far side resolves it. May be nil only when nothing is
	// routed (no Routes and not RouteAll).
	Tunnel tunnel.Tunnel
	// Routes selects the targets that go through Tunnel.
	Routes routes.Routes
	// Direct dials targets that are not routed. nil means a net.Dialer.
	Direct func(ctx context.Context, network, addr string) (net.Conn, error)
	// RouteAll sends everything through Tunnel (e.g. for the docker sidecar).
	RouteAll bool
	// OnConn is called once when each proxied connection ends or fails to
	// connect, on the connection's goroutine: it must not block for long.
	OnConn func(Record)
	// OnCall, if set, receives every HTTP/1.x call read on the proxied
	// connections (package calls), and one entry per TLS connection with
	// its server name. It is called on the copying goroutines: it must only
	// store or hand off. nil reads nothing.
	OnCall func(calls.Call)
	// Logger receives debug lines per connection and info lines per failure.
	// nil discards.
	Logger *slog.Logger
	// DialTimeout bounds one dial. 0 means 30s.
	DialTimeout time.Duration
	// TrustSameUser lets SOCKS5 clients whose socket belongs to this
	// process's user skip username/password. The JVM needs it: its SOCKS
	// client authenticates only through an application Authenticator (the
	// java.net.socks.username/password properties are not read by JDK 8–25;
	// it sends user.name and an empty password). Other users on the machine
	// still need the credentials. The HTTP proxy port always needs them:
	// browsers run as the same user and can be made to send HTTP there.
	TrustSameUser bool
}

// Record is the connection log entry of one proxied connection.
type Record struct {
	Start    time.Time
	Target   string // host:port as requested by the app; names unresolved
	Route    string // RouteTunnel or RouteDirect
	Sent     int64  // bytes from the app to the target
	Received int64  // bytes from the target to the app
	Duration time.Duration
	Err      string // why the connection could not be made, e.g. "db.vpc.internal:5432 refused by the proxy machine"; "" if it was
	Client   string // ClientSOCKS5 or ClientHTTP
}

// Summary counts the proxied connections of a Channel since Start.
type Summary struct {
	Connections int64 // all proxied connections, ended or live, including failed ones
	Tunnel      int64 // of which routed through the tunnel
	Direct      int64 // of which dialled directly
	Failed      int64 // of which could not be connected
	Active      int64 // live now
	Sent        int64 // bytes from apps to targets, of ended connections
	Received    int64 // bytes from targets to apps, of ended connections
	Failures    []Record
}

// Channel is a running local channel service: a SOCKS5 listener and an HTTP
// proxy listener on loopback, both behind per-session credentials.
type Channel struct {
	cfg        Config
	log        *slog.Logger
	user, pass []byte
	userStr    string
	passStr    string

	socksLn   net.Listener
	httpLn    net.Listener
	httpSrv   *http.Server
	transport *http.Transport

	ctx       context.Context // cancelled by Close; parent of every dial
	cancel    context.CancelFunc
	stopAfter func() bool

	mu       sync.Mutex
	closed   bool
	conns    connset.Set // live conns owned by us: clients and upstreams
	wg       sync.WaitGroup
	failures []Record // ring of the last maxFailures failures, under mu

	closeOnce sync.Once
	closeErr  error

	total, viaTunnel, direct, failed, active, sent, received atomic.Int64
}

// observe returns the call reader of a connection to target, nil when
// calls are not read.
func (c *Channel) observe(target string) *calls.Conn {
	if c.cfg.OnCall == nil {
		return nil
	}
	return calls.NewConn(calls.Info{Target: target, Via: "channel"}, c.cfg.OnCall)
}

// Start listens on two loopback ports, one for SOCKS5 and one for the HTTP
// proxy, and serves them until Close is called or ctx is done.
func Start(ctx context.Context, cfg Config) (*Channel, error) {
	if cfg.Tunnel == nil && (cfg.RouteAll || len(cfg.Routes.CIDRs) > 0 || len(cfg.Routes.Domains) > 0) {
		return nil, errors.New("channel: routes given but no tunnel")
	}
	if cfg.Direct == nil {
		d := &net.Dialer{}
		cfg.Direct = d.DialContext
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	user, pass, err := newCredentials()
	if err != nil {
		return nil, fmt.Errorf("channel: credentials: %w", err)
	}
	c := &Channel{
		cfg:     cfg,
		log:     log,
		user:    []byte(user),
		pass:    []byte(pass),
		userStr: user,
		passStr: pass,
	}
	// Both listeners are on loopback: TCP keepalive probes are useless there
	// and enabling them costs four setsockopt calls per accepted connection.
	lc := net.ListenConfig{KeepAlive: -1}
	if c.socksLn, err = lc.Listen(ctx, "tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("channel: listen for SOCKS5: %w", err)
	}
	if c.httpLn, err = lc.Listen(ctx, "tcp", "127.0.0.1:0"); err != nil {
		c.socksLn.Close()
		return nil, fmt.Errorf("channel: listen for HTTP proxy: %w", err)
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.initHTTP()

	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.acceptLoop(c.socksLn)
	}()
	go func() {
		defer c.wg.Done()
		if err := c.httpSrv.Serve(c.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("http proxy stopped", "err", err)
		}
	}()
	c.stopAfter = context.AfterFunc(ctx, func() { c.Close() })
	c.log.Debug("channel started", "socks", c.SOCKSAddr(), "http", c.HTTPAddr())
	return c, nil
}

// newCredentials returns a random user "tether-<8 hex>" and a random
// 24-character password (base64url of 18 random bytes, safe in a proxy URL).
func newCredentials() (user, pass string, err error) {
	var b [4 + 18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	return "tether-" + hex.EncodeToString(b[:4]), base64.RawURLEncoding.EncodeToString(b[4:]), nil
}

// SOCKSAddr is the SOCKS5 listener's address, "127.0.0.1:port".
func (c *Channel) SOCKSAddr() string { return c.socksLn.Addr().String() }

// HTTPAddr is the HTTP proxy listener's address, "127.0.0.1:port".
func (c *Channel) HTTPAddr() string { return c.httpLn.Addr().String() }

// Username is the per-session user name both listeners require.
func (c *Channel) Username() string { return c.userStr }

// Password is the per-session password both listeners require.
func (c *Channel) Password() string { return c.passStr }

// Summary returns the connection counts so far.
func (c *Channel) Summary() Summary {
	s := Summary{
		Connections: c.total.Load(),
		Tunnel:      c.viaTunnel.Load(),
		Direct:      c.direct.Load(),
		Failed:      c.failed.Load(),
		Active:      c.active.Load(),
		Sent:        c.sent.Load(),
		Received:    c.received.Load(),
	}
	c.mu.Lock()
	s.Failures = append([]Record(nil), c.failures...)
	c.mu.Unlock()
	return s
}

// Close stops both listeners, closes every live proxied connection and
// waits for the Channel's goroutines to end. It is safe to call more than once.
func (c *Channel) Close() error {
	c.closeOnce.Do(func() {
		c.stopAfter()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()

		c.cancel()
		err1 := c.socksLn.Close()
		err2 := c.httpSrv.Close() // closes httpLn and the non-hijacked client conns
		c.conns.CloseAll()
		c.transport.CloseIdleConnections()
		c.wg.Wait()
		c.transport.CloseIdleConnections()
		if err1 != nil && !errors.Is(err1, net.ErrClosed) {
			c.closeErr = err1
		} else if err2 != nil && !errors.Is(err2, net.ErrClosed) {
			c.closeErr = err2
		}
		c.log.Debug("channel closed")
	})
	return c.closeErr
}

// enter registers a goroutine that Close must wait for; false once closed.
func (c *Channel) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// track registers a live conn that Close must close; false once closed
// (conn is left open: the caller answers its client first). Close sets
// closed under mu before it closes the set, so the set never refuses here.
func (c *Channel) track(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed && c.conns.Add(conn)
}

func (c *Channel) untrack(conn net.Conn) { c.conns.Remove(conn) }

func (c *Channel) acceptLoop(ln net.Listener) {
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || c.ctx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			c.log.Warn("socks5 accept failed", "err", err, "retry", backoff)
			select {
			case <-time.After(backoff):
			case <-c.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		if !c.enter() {
			conn.Close()
			return
		}
		if !c.track(conn) {
			conn.Close()
			c.wg.Done()
			return
		}
		go func() {
			defer c.wg.Done()
			defer c.untrack(conn)
			c.serveSOCKS(conn)
		}()
	}
}

// route says whether host goes through the tunnel.
func (c *Channel) route(host string) string {
	if c.cfg.RouteAll || c.cfg.Routes.Match(host) {
		return RouteTunnel
	}
	return RouteDirect
}

// dial connects to target ("host:port") through the tunnel or directly.
func (c *Channel) dial(ctx context.Context, target string) (net.Conn, string, error) {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, RouteDirect, fmt.Errorf("bad target %q: %w", target, err)
	}
	route := c.route(host)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	var conn net.Conn
	if route == RouteTunnel {
		conn, err = c.cfg.Tunnel.Dial(ctx, "tcp", target)
	} else {
		conn, err = c.cfg.Direct(ctx, "tcp", target)
	}
	if err == nil && conn == nil {
		err = fmt.Errorf("dial %s: no connection", target)
	}
	return conn, route, err
}

// connected accounts for a proxied connection whose target is connected; it
// is live until finish(rec, true).
func (c *Channel) connected() { c.active.Add(1) }

// finish accounts for a proxied connection that ended or failed and calls
// OnConn. Every proxied connection passes here exactly once; wasConnected
// says whether connected was called for it.
func (c *Channel) finish(rec Record, wasConnected bool) {
	if wasConnected {
		c.active.Add(-1)
	}
	rec.Duration = time.Since(rec.Start)
	c.total.Add(1)
	if rec.Route == RouteTunnel {
		c.viaTunnel.Add(1)
	} else {
		c.direct.Add(1)
	}
	c.sent.Add(rec.Sent)
	c.received.Add(rec.Received)
	if rec.Err != "" {
		c.failed.Add(1)
		c.mu.Lock()
		if len(c.failures) == maxFailures {
			copy(c.failures, c.failures[1:])
			c.failures = c.failures[:maxFailures-1]
		}
		c.failures = append(c.failures, rec)
		c.mu.Unlock()
		c.log.Info("connection failed", "client", rec.Client, "target", rec.Target, "route", rec.Route, "err", rec.Err)
	} else {
		c.log.Debug("connection ended", "client", rec.Client, "target", rec.Target, "route", rec.Route,
			"sent", rec.Sent, "received", rec.Received, "duration", rec.Duration)
	}
	if c.cfg.OnConn != nil {
		c.cfg.OnConn(rec)
	}
}
