package kubernetes

import (
	"bufio"
	"context"
	"errors"
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
// proxy in front of it refuses SPDY, or the other way round with
// Config.PortForward "websocket". After a refusal the dialer keeps to the
// protocol that worked.
type pfDialer struct {
	c         *cluster
	spdyFirst atomic.Bool
	reqID     atomic.Int64
	// Protocol is what the last connection used ("websocket" or "spdy").
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
	d := &pfDialer{c: c}
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
		d.protocol.Store("spdy")
		return sp, nil
	}
	spdyFirst := d.spdyFirst.Load()
	first, second := httpstream.Dialer(ws), httpstream.Dialer(sp)
	if spdyFirst {
		first, second = sp, ws
	}
	return portforward.NewFallbackDialer(first, second, func(err error) bool {
		fb := httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		if spdyFirst {
			fb = spdyRefused(err)
		}
		if fb {
			d.spdyFirst.Store(!spdyFirst)
			d.protocol.Store(protocolName(!spdyFirst))
		}
		return fb
	}), nil
}

func protocolName(spdy bool) string {
	if spdy {
		return "spdy"
	}
	return "websocket"
}

// spdyRefused: the API server, or a proxy in front of it, answered the
// SPDY upgrade with something else (client-go reports that as the API
// status or "unable to upgrade connection", not as an UpgradeFailureError):
// WebSocket may get through. 403 is RBAC granting only get (WebSocket) on
// pods/portforward. Not found, unauthorised, server errors and transport
// errors fail the same way over WebSocket.
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
	d.protocol.Store(protocolName(d.spdyFirst.Load()))
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
