package kubernetes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/tether-dev/tether/internal/errcat"
)

// pfDialer opens port-forward connections to pods: SPDY first (the API
// server relays it as is), SPDY tunnelled in WebSocket frames (kubectl's
// default since 1.31; the API server unwraps every frame: ~30% more CPU
// per byte there and here, docs/benchmarks.md) when the API server or a
// proxy in front of it refuses SPDY and WebSocket then works; from then on
// WebSocket first. Config.PortForward "websocket" is kubectl's order, kept.
type pfDialer struct {
	c            *cluster
	spdyFirst    atomic.Bool
	defaultOrder bool // no PortForward setting: the order may change
	reqID        atomic.Int64
	// Protocol is what the last connection made used ("websocket" or
	// "spdy"); nil before the first.
	protocol atomic.Value
}

func newPFDialer(c *cluster, protocol string) (*pfDialer, error) {
	switch protocol {
	case "", "spdy", "websocket":
	default:
		return nil, errcat.Config.Newf("kubernetes: portForward %q: must be \"websocket\" or \"spdy\"", protocol)
	}
	// Checked once here so that a bad REST config fails at Open.
	if _, _, err := spdy.RoundTripperFor(c.rest); err != nil {
		return nil, errcat.Config.Newf("kubernetes: port-forward transport: %w", err) // the kubeconfig's TLS or proxy settings
	}
	d := &pfDialer{c: c, defaultOrder: protocol == "" || protocol == "spdy"}
	d.spdyFirst.Store(protocol != "websocket")
	return d, nil
}

func (d *pfDialer) dialer(pod string) (httpstream.Dialer, error) {
	u := d.c.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(d.c.namespace).
		Name(pod).SubResource("portforward").URL()
	// A SPDY round tripper keeps the connection it upgraded in itself (its
	// Upgrader reads it back), so concurrent dials need one each.
	rt, up, err := spdy.RoundTripperFor(d.c.rest)
	if err != nil {
		return nil, errcat.Config.Newf("kubernetes: port-forward transport: %w", err)
	}
	sp := spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u)
	ws, err := portforward.NewSPDYOverWebsocketDialer(u, d.c.rest)
	if err != nil {
		return &fallbackDialer{d: d, first: sp, firstSPDY: true}, nil
	}
	if d.spdyFirst.Load() {
		return &fallbackDialer{d: d, first: sp, second: ws, firstSPDY: true, refused: spdyRefused, sticky: d.defaultOrder}, nil
	}
	return &fallbackDialer{d: d, first: ws, second: sp, refused: func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err) // as kubectl
	}, sticky: d.defaultOrder}, nil
}

// fallbackDialer dials with first, and with second when first's failure
// is a refusal of its protocol. When second worked, and the order is the
// default one, the pfDialer keeps to second's protocol from then on (a
// failure that second shares, a pod being replaced say, changes nothing).
type fallbackDialer struct {
	d             *pfDialer
	first, second httpstream.Dialer // second may be nil
	firstSPDY     bool
	refused       func(error) bool
	sticky        bool
}

func (f *fallbackDialer) Dial(protocols ...string) (httpstream.Connection, string, error) {
	c, p, err := f.first.Dial(protocols...)
	if err == nil {
		f.d.protocol.Store(protocolName(f.firstSPDY))
		return c, p, nil
	}
	if f.second == nil || !f.refused(err) {
		return nil, "", err
	}
	c, p, err2 := f.second.Dial(protocols...)
	if err2 != nil {
		return nil, "", fmt.Errorf("%w (and over %s: %w)", err2, protocolName(f.firstSPDY), err)
	}
	f.d.protocol.Store(protocolName(!f.firstSPDY))
	if f.sticky {
		f.d.spdyFirst.Store(!f.firstSPDY)
	}
	return c, p, nil
}

func protocolName(spdy bool) string {
	if spdy {
		return "spdy"
	}
	return "websocket"
}

// spdyRefused: the API server, or a proxy in front of it, may have refused
// SPDY itself (client-go reports a non-101 answer as the API status, or as
// "unable to upgrade connection: <body>", never as an UpgradeFailureError):
// 403 is RBAC granting only get (WebSocket) on pods/portforward; a proxy
// answers 400, 405, 426, 501 or a page of its own. A not-found pod or a
// gateway error can look the same; then WebSocket fails too and nothing
// changes (fallbackDialer). Unauthorised, server and transport errors are
// not retried.
func spdyRefused(err error) bool {
	var st *apierrors.StatusError
	if errors.As(err, &st) {
		switch st.ErrStatus.Code {
		case http.StatusBadRequest, http.StatusForbidden, http.StatusMethodNotAllowed, http.StatusUpgradeRequired, http.StatusNotImplemented:
			return true
		}
		return false
	}
	return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err) ||
		strings.HasPrefix(err.Error(), "unable to upgrade connection")
}

// dial opens one port-forward connection to port of pod, with one stream
// pair (error + data), sends hello (if any) and waits for the first byte
// from the far side (the agent's SSH banner, or its answer to hello): a port
// that does not answer yet is reported here, not in the middle of the SSH
// handshake. The returned conn owns the connection.
func (d *pfDialer) dial(ctx context.Context, pod string, port int, hello []byte) (*pfConn, error) {
	dl, err := d.dialer(pod)
	if err != nil {
		return nil, err
	}
	type res struct {
		c   httpstream.Connection
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, _, err := dl.Dial(portforward.PortForwardProtocolV1Name)
		ch <- res{c, err}
	}()
	var conn httpstream.Connection
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, errcat.Environment.Newf("port-forward to pod %s: %w", pod, r.err)
		}
		conn = r.c
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, errcat.Environment.Newf("port-forward to pod %s: %w", pod, ctx.Err())
	}
	id := strconv.FormatInt(d.reqID.Add(1), 10)
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, id)
	errStream, err := conn.CreateStream(h)
	if err != nil {
		conn.Close()
		return nil, errcat.Environment.Newf("port-forward to pod %s: error stream: %w", pod, err)
	}
	errStream.Close() // we never write to it
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(h)
	if err != nil {
		conn.Close()
		return nil, errcat.Environment.Newf("port-forward to pod %s: data stream: %w", pod, err)
	}
	pc := &pfConn{conn: conn, data: data, br: bufio.NewReaderSize(data, 64<<10), pod: pod, done: make(chan struct{})}
	go func() {
		msg, err := io.ReadAll(errStream)
		if len(msg) > 0 {
			pc.fail(errcat.Environment.Newf("port-forward to pod %s: %s", pod, msg))
		} else if err != nil {
			pc.fail(errcat.Environment.Newf("port-forward to pod %s: %w", pod, err))
		}
	}()
	go func() {
		select {
		case <-conn.CloseChan():
			pc.fail(errcat.Environment.Newf("port-forward to pod %s: connection closed", pod))
		case <-pc.done:
		}
	}()
	peek := make(chan error, 1)
	go func() {
		if len(hello) > 0 {
			if _, err := pc.Write(hello); err != nil {
				peek <- err
				return
			}
		}
		_, err := pc.br.Peek(1)
		peek <- err
	}()
	select {
	case err := <-peek:
		if err != nil {
			if e := pc.failure(); e != nil {
				err = e
			}
			pc.Close()
			return nil, errcat.Environment.Newf("port-forward to pod %s: no answer on port %d: %w", pod, port, err)
		}
	case <-ctx.Done():
		pc.Close()
		return nil, errcat.Environment.Newf("port-forward to pod %s: waiting for the agent: %w", pod, ctx.Err())
	}
	return pc, nil
}

// pfConn is one port-forward data stream as a net.Conn.
type pfConn struct {
	conn httpstream.Connection
	data httpstream.Stream
	br   *bufio.Reader
	pod  string

	mu   sync.Mutex
	err  error
	once sync.Once
	done chan struct{}
}

func (c *pfConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.conn.Close() // unblocks reads and writes
}

func (c *pfConn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *pfConn) Read(b []byte) (int, error) {
	n, err := c.br.Read(b)
	if err != nil {
		if e := c.failure(); e != nil && !errors.Is(err, io.EOF) {
			err = e
		}
	}
	return n, err
}

func (c *pfConn) Write(b []byte) (int, error) {
	n, err := c.data.Write(b)
	if err != nil {
		if e := c.failure(); e != nil {
			err = e
		}
	}
	return n, err
}

func (c *pfConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.data.Reset()
		c.conn.Close()
	})
	return nil
}

type pfAddr string

func (a pfAddr) Network() string { return "portforward" }
func (a pfAddr) String() string  { return string(a) }

func (c *pfConn) LocalAddr() net.Addr                { return pfAddr("local") }
func (c *pfConn) RemoteAddr() net.Addr               { return pfAddr("pod/" + c.pod) }
func (c *pfConn) SetDeadline(t time.Time) error      { return nil }
func (c *pfConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *pfConn) SetWriteDeadline(t time.Time) error { return nil }
