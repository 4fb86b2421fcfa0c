package channel

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-dev/tether/calls"
)

var errChannelClosed = errors.New("channel closed")

// initHTTP builds the HTTP proxy: CONNECT is spliced like SOCKS5, plain
// absolute-URI requests go through a ReverseProxy whose Transport dials with
// the same routing (hop-by-hop and Proxy-* headers are removed by it).
func (c *Channel) initHTTP() {
	errLog := slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)
	c.transport = &http.Transport{
		Proxy:                 nil, // never the environment's proxy: we are the proxy
		DialContext:           c.dialHTTPUpstream,
		DisableCompression:    true, // pass Content-Encoding through untouched
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	rp := &httputil.ReverseProxy{
		// The incoming request already carries the absolute target URL;
		// ReverseProxy has removed the hop-by-hop headers before Rewrite.
		Rewrite:       func(*httputil.ProxyRequest) {},
		Transport:     c.transport,
		FlushInterval: -1, // stream responses: no added latency
		ErrorLog:      errLog,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "tether: "+err.Error(), httpStatus(err))
		},
	}
	c.httpSrv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.serveHTTP(w, r, rp)
		}),
		ReadHeaderTimeout: handshakeTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
		BaseContext:       func(net.Listener) context.Context { return c.ctx },
	}
}

func (c *Channel) serveHTTP(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
	if !c.enter() {
		http.Error(w, "tether: channel closed", http.StatusServiceUnavailable)
		return
	}
	defer c.wg.Done()
	if !c.authorized(r) {
		w.Header().Set("Proxy-Authenticate", `Basic realm="tether"`)
		http.Error(w, "tether: proxy authentication required", http.StatusProxyAuthRequired)
		return
	}
	if r.Method == http.MethodConnect {
		c.serveConnect(w, r)
		return
	}
	if r.URL.Scheme != "http" || r.URL.Host == "" {
		http.Error(w, "tether: this is a proxy: send CONNECT or an absolute http:// URL", http.StatusBadRequest)
		return
	}
	rp.ServeHTTP(w, r)
}

// authorized checks "Proxy-Authorization: Basic" against the session's
// credentials.
func (c *Channel) authorized(r *http.Request) bool {
	const prefix = "Basic "
	h := r.Header.Get("Proxy-Authorization")
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len(prefix):]))
	if err != nil {
		return false
	}
	user, pass, ok := bytes.Cut(raw, []byte{':'})
	return ok && subtle.ConstantTimeCompare(user, c.user)&subtle.ConstantTimeCompare(pass, c.pass) == 1
}

func (c *Channel) serveConnect(w http.ResponseWriter, r *http.Request) {
	target := r.Host
	if _, port, err := net.SplitHostPort(target); err != nil || port == "" {
		http.Error(w, "tether: CONNECT needs host:port", http.StatusBadRequest)
		return
	}
	rec := Record{Start: time.Now(), Target: target, Client: ClientHTTP}
	up, route, err := c.dial(r.Context(), target)
	rec.Route = route
	if err != nil {
		rec.Err = err.Error()
		c.finish(rec, false)
		http.Error(w, "tether: "+err.Error(), httpStatus(err))
		return
	}
	defer up.Close()
	if !c.track(up) {
		rec.Err = errChannelClosed.Error()
		c.finish(rec, false)
		http.Error(w, "tether: channel closed", http.StatusServiceUnavailable)
		return
	}
	defer c.untrack(up)
	c.connected()
	defer func() { c.finish(rec, true) }()

	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		c.log.Debug("http proxy: hijack failed", "err", err)
		return
	}
	defer conn.Close()
	if !c.track(conn) {
		return
	}
	defer c.untrack(conn)
	conn.SetDeadline(time.Time{})
	// Bytes the client sent after the CONNECT request (e.g. a TLS hello).
	var pre []byte
	if n := brw.Reader.Buffered(); n > 0 {
		pre, _ = brw.Reader.Peek(n)
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	rec.Sent, rec.Received = splice(conn, up, pre, c.observe(target))
}

// httpStatus is the status of a failed dial: 504 for timeouts, else 502.
func httpStatus(err error) int {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// dialHTTPUpstream is the Transport's dialer for plain HTTP requests. Each
// upstream connection is one Record, written when the Transport closes it.
func (c *Channel) dialHTTPUpstream(ctx context.Context, _, addr string) (net.Conn, error) {
	if !c.enter() {
		return nil, errChannelClosed
	}
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)()

	rec := Record{Start: time.Now(), Target: addr, Client: ClientHTTP}
	conn, route, err := c.dial(ctx, addr)
	rec.Route = route
	if err != nil {
		rec.Err = err.Error()
		c.finish(rec, false)
		return nil, err
	}
	rc := &recordedConn{Conn: conn, c: c, rec: rec, obs: c.observe(addr)}
	if !c.track(rc) {
		conn.Close()
		rec.Err = errChannelClosed.Error()
		c.finish(rec, false)
		return nil, errChannelClosed
	}
	c.connected()
	return rc, nil
}

// recordedConn counts the bytes of an upstream connection that the
// Transport owns and finishes its Record when the Transport closes it.
type recordedConn struct {
	net.Conn
	c              *Channel
	rec            Record
	sent, received atomic.Int64
	once           sync.Once
	obs            *calls.Conn // nil when calls are not read
}

func (rc *recordedConn) Read(p []byte) (int, error) {
	n, err := rc.Conn.Read(p)
	rc.received.Add(int64(n))
	if rc.obs != nil && n > 0 {
		rc.obs.Responses().Write(p[:n])
	}
	return n, err
}

func (rc *recordedConn) Write(p []byte) (int, error) {
	if rc.obs != nil {
		rc.obs.Requests().Write(p) // before the server can answer it
	}
	n, err := rc.Conn.Write(p)
	rc.sent.Add(int64(n))
	return n, err
}

func (rc *recordedConn) Close() error {
	err := rc.Conn.Close()
	rc.once.Do(func() {
		rc.c.untrack(rc)
		if rc.obs != nil {
			rc.obs.End()
		}
		rc.rec.Sent, rc.rec.Received = rc.sent.Load(), rc.received.Load()
		rc.c.finish(rc.rec, true)
	})
	return err
}
