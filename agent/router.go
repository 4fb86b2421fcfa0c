package agent

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-dev/tether/internal/relay"
)

// The lane router (`tether-agent router`) stands in for a Service's pods
// while developers debug lanes of it: it parses each HTTP/1.1 request and
// sends it to the developer's agent pod of the request's lane, or to the
// base Service (the original pods). Routes are registered by the laptops
// over the control port with a token; they are leases that the laptops
// renew every second.

// RouterPort is one port the router serves.
type RouterPort struct {
	Listen string // address to listen on, e.g. ":8080" (the Service's targetPort)
	Base   string // host:port of the base Service for this port
}

// RouterConfig configures ServeRouter.
type RouterConfig struct {
	Ports   []RouterPort
	Control net.Listener // control API (routes, status)
	Token   string       // bearer token of the control API
	// TTL of a route without renewal; default 15s.
	TTL time.Duration
	// ReadyTimeout bounds dialling a lane and reading LaneReady; default 3s.
	ReadyTimeout time.Duration
	// SniffTimeout: a connection that sends nothing for this long is not
	// HTTP (server-first protocol) and is carried raw to base; default 250ms.
	SniffTimeout time.Duration
	Logger       *slog.Logger
}

// Router is a running lane router.
type Router struct {
	cfg  RouterConfig
	log  *slog.Logger
	lns  []net.Listener
	srvs []*http.Server
	wg   sync.WaitGroup
	ctx  context.Context
	stop context.CancelFunc

	requests atomic.Int64
	baseTrs  sync.Map // client conn -> its *http.Transport to base

	mu        sync.Mutex
	routes    map[string]*Route
	emptyAt   time.Time // when the last route went
	expired   []RouteOwner
	fallbacks map[string]*fallbackCount
	served    map[string]int64
}

type fallbackCount struct {
	n      int64
	reason string
}

// StartRouter listens on every port and serves the control API until Close.
func StartRouter(cfg RouterConfig) (*Router, error) {
	if cfg.Token == "" {
		return nil, errors.New("router: a control token is required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 15 * time.Second
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 3 * time.Second
	}
	if cfg.SniffTimeout <= 0 {
		cfg.SniffTimeout = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{cfg: cfg, log: cfg.Logger, routes: map[string]*Route{}, emptyAt: time.Now(),
		fallbacks: map[string]*fallbackCount{}, served: map[string]int64{}}
	r.ctx, r.stop = context.WithCancel(context.Background())
	errLog := log.New(io.Discard, "", 0)
	for _, p := range cfg.Ports {
		ln, err := net.Listen("tcp", p.Listen)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("router: %w", err)
		}
		r.lns = append(r.lns, ln)
		cl := newConnListener(ln.Addr())
		srv := &http.Server{Handler: r.portHandler(p.Base), ReadHeaderTimeout: time.Minute, ErrorLog: errLog,
			ConnContext: r.connContext, ConnState: r.connState}
		r.srvs = append(r.srvs, srv)
		r.wg.Go(func() { _ = srv.Serve(cl) })
		r.wg.Go(func() { r.accept(ln, p.Base, cl) })
	}
	if cfg.Control != nil {
		srv := &http.Server{Handler: r.controlHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
		r.srvs = append(r.srvs, srv)
		r.wg.Go(func() { _ = srv.Serve(cfg.Control) })
	}
	r.wg.Go(r.expire)
	return r, nil
}

// Addrs are the addresses of the routed ports, in Config order.
func (r *Router) Addrs() []net.Addr {
	out := make([]net.Addr, len(r.lns))
	for i, ln := range r.lns {
		out[i] = ln.Addr()
	}
	return out
}

// Shutdown stops accepting, closes idle keep-alive connections and waits
// (bounded by ctx) for the requests in flight, then closes.
func (r *Router) Shutdown(ctx context.Context) error {
	for _, ln := range r.lns {
		ln.Close()
	}
	var wg sync.WaitGroup
	for _, s := range r.srvs {
		wg.Go(func() { _ = s.Shutdown(ctx) })
	}
	wg.Wait()
	return r.Close()
}

// Close stops serving.
func (r *Router) Close() error {
	r.stop()
	for _, ln := range r.lns {
		ln.Close()
	}
	for _, s := range r.srvs {
		s.Close()
	}
	r.wg.Wait()
	return nil
}

// accept sniffs each connection: HTTP goes to the HTTP server (per-request
// routing), anything else is carried raw to base.
func (r *Router) accept(ln net.Listener, base string, cl *connListener) {
	defer cl.Close()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r.wg.Go(func() {
			br := bufio.NewReader(c)
			c.SetReadDeadline(time.Now().Add(r.cfg.SniffTimeout))
			b, err := br.Peek(1)
			c.SetReadDeadline(time.Time{})
			if err == nil && b[0] >= 'A' && b[0] <= 'Z' {
				if !cl.put(&bufConn{Conn: c, r: br}) {
					c.Close()
				}
				return
			}
			var nerr net.Error
			if err != nil && !(errors.As(err, &nerr) && nerr.Timeout()) {
				c.Close()
				return
			}
			sniffed, _ := br.Peek(br.Buffered())
			r.raw(c, sniffed, base)
		})
	}
}

// raw carries a non-HTTP connection to base; sniffed are the bytes already
// read from c.
func (r *Router) raw(c net.Conn, sniffed []byte, base string) {
	defer c.Close()
	d := net.Dialer{Timeout: 10 * time.Second}
	up, err := d.DialContext(r.ctx, "tcp", base)
	if err != nil {
		r.log.Warn("base unreachable", "base", base, "err", err)
		return
	}
	stop := context.AfterFunc(r.ctx, func() { c.Close(); up.Close() })
	defer stop()
	relay.Conns(c, up, relay.Prefix(sniffed))
}

// portHandler routes each request: to the lane's developer when its route
// answers (LaneReady), else to base.
func (r *Router) portHandler(base string) http.Handler {
	// Each client connection gets its own keep-alive connection to base:
	// kube-proxy balances base pods per connection, as it did before the
	// router stood in; a shared pool would pin all traffic to few pods.
	tr := roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if t, ok := req.Context().Value(baseTrKey{}).(*http.Transport); ok {
			return t.RoundTrip(req)
		}
		return nil, errors.New("no base transport")
	})
	rewrite := func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme = "http"
		pr.Out.URL.Host = base
	}
	baseProxy := &httputil.ReverseProxy{Rewrite: rewrite, Transport: tr, ErrorLog: log.New(io.Discard, "", 0),
		ErrorHandler: r.proxyError("base " + base)}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		lane := LaneOf(req.Header)
		if lane == "" {
			baseProxy.ServeHTTP(w, req)
			return
		}
		conn, registered, err := r.dialLane(req.Context(), lane)
		if conn != nil {
			r.count(lane)
			w.Header().Set(LaneServedHeader, "lane")
			var once atomic.Bool
			lt := &http.Transport{DisableKeepAlives: true, DisableCompression: true,
				DialContext: func(context.Context, string, string) (net.Conn, error) {
					if once.Swap(true) {
						return nil, errors.New("lane stream already used")
					}
					return conn, nil
				}}
			p := &httputil.ReverseProxy{Rewrite: rewrite, Transport: lt, ErrorLog: log.New(io.Discard, "", 0),
				ErrorHandler: r.proxyError("lane " + lane)}
			p.ServeHTTP(w, req)
			if !once.Load() {
				conn.Close()
			}
			lt.CloseIdleConnections()
			return
		}
		if registered {
			r.fallback(lane, err)
		}
		w.Header().Set(LaneServedHeader, "base")
		baseProxy.ServeHTTP(w, req)
	})
}

type baseTrKey struct{}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (r *Router) connContext(ctx context.Context, c net.Conn) context.Context {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	r.baseTrs.Store(c, t)
	return context.WithValue(ctx, baseTrKey{}, t)
}

func (r *Router) connState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		if t, ok := r.baseTrs.LoadAndDelete(c); ok {
			t.(*http.Transport).CloseIdleConnections()
		}
	}
}

func (r *Router) proxyError(what string) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, req *http.Request, err error) {
		r.log.Warn("proxy error", "to", what, "err", err)
		w.WriteHeader(http.StatusBadGateway)
	}
}

// dialLane opens a stream to the lane's developer and waits for LaneReady.
// registered says whether the lane has a route at all.
func (r *Router) dialLane(ctx context.Context, lane string) (c net.Conn, registered bool, err error) {
	r.mu.Lock()
	rt := r.routes[lane]
	var target string
	if rt != nil && time.Now().Before(rt.Expires) {
		target = rt.Target
	}
	r.mu.Unlock()
	if target == "" {
		return nil, false, nil
	}
	d := net.Dialer{Timeout: r.cfg.ReadyTimeout}
	c, err = d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, true, fmt.Errorf("the developer's agent pod does not accept: %w", err)
	}
	c.SetReadDeadline(time.Now().Add(r.cfg.ReadyTimeout))
	var b [len(LaneReady)]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || string(b[:]) != LaneReady {
		c.Close()
		if err == nil {
			err = fmt.Errorf("unexpected greeting %q", b[:])
		}
		return nil, true, fmt.Errorf("the developer's app did not accept the stream: %w", err)
	}
	c.SetReadDeadline(time.Time{})
	return c, true, nil
}

func (r *Router) count(lane string) {
	r.mu.Lock()
	r.served[lane]++
	r.mu.Unlock()
}

func (r *Router) fallback(lane string, err error) {
	r.log.Info("lane request served by base", "lane", lane, "why", err)
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.fallbacks[lane]
	if f == nil {
		f = &fallbackCount{}
		r.fallbacks[lane] = f
	}
	f.n++
	f.reason = err.Error()
}

// expire drops routes whose lease ran out.
func (r *Router) expire() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		r.mu.Lock()
		for lane, rt := range r.routes {
			if now.After(rt.Expires) {
				r.log.Info("route expired", "lane", lane, "owner", rt.Owner.User+"@"+rt.Owner.Host)
				delete(r.routes, lane)
				r.expired = append(r.expired, rt.Owner)
				if len(r.routes) == 0 {
					r.emptyAt = now
				}
			}
		}
		r.mu.Unlock()
	}
}

// Status is the router's routes and idleness.
func (r *Router) Status() RouterStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := RouterStatus{Routes: []Route{}, Requests: r.requests.Load(), Expired: append([]RouteOwner(nil), r.expired...)}
	for _, rt := range r.routes {
		st.Routes = append(st.Routes, *rt)
	}
	if len(r.routes) == 0 {
		st.IdleSeconds = time.Since(r.emptyAt).Seconds()
	}
	return st
}

// controlHandler is the control API:
//
//	PUT    /v1/lanes/{lane}  RouteRequest -> RouteReply (register or renew)
//	DELETE /v1/lanes/{lane}?session=S     -> RouterStatus (remove)
//	GET    /v1/status                     -> RouterStatus
//
// every call with `Authorization: Bearer <token>` or the token in
// X-Tether-Token.
func (r *Router) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/lanes/{lane}", func(w http.ResponseWriter, req *http.Request) {
		var rr RouteRequest
		if err := json.NewDecoder(io.LimitReader(req.Body, 64<<10)).Decode(&rr); err != nil || rr.Target == "" {
			http.Error(w, "bad route", http.StatusBadRequest)
			return
		}
		if _, _, err := net.SplitHostPort(rr.Target); err != nil {
			http.Error(w, "bad target", http.StatusBadRequest)
			return
		}
		ttl := r.cfg.TTL
		if rr.TTLSeconds > 0 {
			ttl = time.Duration(rr.TTLSeconds) * time.Second
		}
		lane := req.PathValue("lane")
		r.mu.Lock()
		old := r.routes[lane]
		if len(r.routes) == 0 {
			r.expired = nil
		}
		r.routes[lane] = &Route{Lane: lane, Target: rr.Target, Session: rr.Session, Owner: rr.Owner, Expires: time.Now().Add(ttl)}
		var reply RouteReply
		if f := r.fallbacks[lane]; f != nil {
			reply.Fallbacks, reply.Reason = f.n, f.reason
			delete(r.fallbacks, lane)
		}
		reply.Served = r.served[lane]
		r.mu.Unlock()
		if old == nil || old.Target != rr.Target {
			r.log.Info("route", "lane", lane, "target", rr.Target, "owner", rr.Owner.User+"@"+rr.Owner.Host)
		}
		writeJSON(w, reply)
	})
	mux.HandleFunc("DELETE /v1/lanes/{lane}", func(w http.ResponseWriter, req *http.Request) {
		lane, session := req.PathValue("lane"), req.URL.Query().Get("session")
		r.mu.Lock()
		if rt := r.routes[lane]; rt != nil && (session == "" || rt.Session == session) {
			delete(r.routes, lane)
			if len(r.routes) == 0 {
				r.emptyAt = time.Now()
			}
			r.log.Info("route removed", "lane", lane)
		}
		r.mu.Unlock()
		writeJSON(w, r.Status())
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, req *http.Request) {
		writeJSON(w, r.Status())
	})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok { // through the API server's pod proxy, which keeps its own Authorization
			tok, ok = req.Header.Get(RouterTokenHeader), true
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(r.cfg.Token)) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, req)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// bufConn is a conn whose first bytes were read into r.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// connListener hands sniffed connections to an http.Server.
type connListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) put(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
