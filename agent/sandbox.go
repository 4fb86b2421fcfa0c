package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/internal/connset"
	"github.com/tether-dev/tether/internal/relay"
)

// The sandbox's private network.
const (
	SandboxZone = "sandbox.internal"
	SandboxCIDR = "10.99.0.0/24"
)

var (
	sandboxPrefix = netip.MustParsePrefix(SandboxCIDR)
	sandboxSelf   = netip.MustParseAddr("10.99.0.1") // the agent's own address in the sandbox
)

// SandboxHost is one service of the sandbox network.
type SandboxHost struct {
	Name        string // fully qualified, in SandboxZone
	IP          netip.Addr
	Port        int
	Description string
	serve       func(s *Sandbox, c net.Conn)
}

var sandboxHosts = []SandboxHost{
	{Name: "orders." + SandboxZone, IP: netip.MustParseAddr("10.99.0.10"), Port: 80,
		Description: "HTTP: GET / answers JSON, /fail 500, /slow?ms=N after N ms", serve: (*Sandbox).serveOrders},
	{Name: "db." + SandboxZone, IP: netip.MustParseAddr("10.99.0.11"), Port: 5432,
		Description: "TCP echo", serve: (*Sandbox).serveEcho},
}

// SandboxHosts lists the sandbox services.
func SandboxHosts() []SandboxHost { return append([]SandboxHost(nil), sandboxHosts...) }

// Sandbox is a private network that exists only inside the agent, for a
// demo without infrastructure. Its Dial serves direct-tcpip for the zone
// sandbox.internal and the range 10.99.0.0/24 in-process (no sockets), and
// refuses everything else: it is not an open proxy. Use it as
// SSHServerConfig.Dial and .Listen.
type Sandbox struct {
	Now func() time.Time // default time.Now

	mu     sync.Mutex
	closed bool
	stop   chan struct{} // closed by Close
	conns  connset.Set   // service ends
	wg     sync.WaitGroup
	nextID int
}

// NewSandbox returns a sandbox; Close stops its services.
func NewSandbox() *Sandbox { return &Sandbox{} }

func (s *Sandbox) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func prohibited(addr string) error {
	return &RejectError{Reason: ssh.Prohibited, Message: msgProhibited + ": the sandbox only reaches " +
		SandboxZone + " and " + SandboxCIDR + ", not " + addr}
}

func connectFailed(msg string) error {
	return &RejectError{Reason: ssh.ConnectionFailed, Message: msg}
}

// Dial connects to a sandbox service. Errors are *RejectError with
// OpenSSH's messages: "Name or service not known" for other names in the
// zone, "No route to host" for other addresses in the range, "Connection
// refused" for other ports, and "administratively prohibited" for anything
// outside the sandbox.
func (s *Sandbox) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, prohibited(network + " " + addr)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, connectFailed(msgConnectFail + ": " + err.Error())
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, connectFailed(msgNoSuchHost)
	}
	var h *SandboxHost
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if !sandboxPrefix.Contains(ip) {
			return nil, prohibited(addr)
		}
		for i := range sandboxHosts {
			if sandboxHosts[i].IP == ip {
				h = &sandboxHosts[i]
			}
		}
		if h == nil {
			return nil, connectFailed(msgNoRoute)
		}
	} else {
		name := strings.TrimSuffix(strings.ToLower(host), ".")
		if name != SandboxZone && !strings.HasSuffix(name, "."+SandboxZone) {
			return nil, prohibited(addr)
		}
		for i := range sandboxHosts {
			if sandboxHosts[i].Name == name {
				h = &sandboxHosts[i]
			}
		}
		if h == nil {
			return nil, connectFailed(msgNoSuchHost)
		}
	}
	if int(port) != h.Port {
		return nil, connectFailed(msgRefused)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, connectFailed(msgRefused)
	}
	s.nextID++
	local := &net.TCPAddr{IP: sandboxSelf.AsSlice(), Port: 32768 + s.nextID%28000}
	remote := &net.TCPAddr{IP: h.IP.AsSlice(), Port: h.Port}
	cli, srv := memPipe(local, remote)
	s.conns.Add(srv) // Close closes the set after closed is set: never refused
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			srv.Close()
			s.conns.Remove(srv)
		}()
		h.serve(s, srv)
	}()
	return cli, nil
}

// Listen binds tcpip-forward requests on loopback only: a sandbox runs on
// the developer's machine, and must not open its ports to the LAN. Any
// address ("", "0.0.0.0", "*", "localhost") is bound on 127.0.0.1; "::" on ::1.
func (s *Sandbox) Listen(network, addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	switch host {
	case "", "*", "0.0.0.0", "localhost":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	default:
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("the sandbox only listens on loopback, not %s", host)
		}
	}
	return net.Listen(network, net.JoinHostPort(host, port))
}

// done is closed when the sandbox closes.
func (s *Sandbox) done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop == nil {
		s.stop = make(chan struct{})
		if s.closed {
			close(s.stop)
		}
	}
	return s.stop
}

// Close ends every open sandbox connection and waits for the services.
func (s *Sandbox) Close() error {
	s.done()
	s.mu.Lock()
	if !s.closed {
		close(s.stop)
	}
	s.closed = true
	s.mu.Unlock()
	s.conns.CloseAll()
	s.wg.Wait()
	return nil
}

// serveEcho is db.sandbox.internal: it sends back what it reads.
func (s *Sandbox) serveEcho(c net.Conn) {
	if _, err := io.Copy(c, c); err == nil {
		relay.CloseWrite(c)
	}
}

const (
	httpIdleTimeout = 2 * time.Minute
	httpMaxBody     = 1 << 20
)

// serveOrders is orders.sandbox.internal: a minimal HTTP/1.1 server (no
// net/http, to keep the agent small).
func (s *Sandbox) serveOrders(c net.Conn) {
	br := bufio.NewReader(c)
	tp := textproto.NewReader(br)
	for {
		c.SetReadDeadline(s.now().Add(httpIdleTimeout))
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		method, rest, ok1 := strings.Cut(line, " ")
		target, proto, ok2 := strings.Cut(rest, " ")
		if !ok1 || !ok2 || !strings.HasPrefix(proto, "HTTP/1.") {
			writeHTTP(c, "HEAD", 400, map[string]string{"error": "bad request"}, false)
			return
		}
		hdr, err := tp.ReadMIMEHeader()
		if err != nil {
			writeHTTP(c, method, 400, map[string]string{"error": "bad request"}, false)
			return
		}
		conn := strings.ToLower(hdr.Get("Connection"))
		keepAlive := (proto == "HTTP/1.1" && !strings.Contains(conn, "close")) ||
			(proto == "HTTP/1.0" && strings.Contains(conn, "keep-alive"))
		if hdr.Get("Transfer-Encoding") != "" {
			writeHTTP(c, method, 501, map[string]string{"error": "chunked request bodies are not supported"}, false)
			return
		}
		if cl := hdr.Get("Content-Length"); cl != "" {
			n, err := strconv.ParseInt(cl, 10, 64)
			if err != nil || n < 0 || n > httpMaxBody {
				writeHTTP(c, method, 400, map[string]string{"error": "bad Content-Length"}, false)
				return
			}
			if _, err := io.CopyN(io.Discard, br, n); err != nil {
				return
			}
		}
		// origin-form "/path?q" or absolute-form "http://host/path?q"
		path := target
		if i := strings.Index(path, "://"); i >= 0 {
			path = path[i+3:]
			if j := strings.IndexByte(path, '/'); j >= 0 {
				path = path[j:]
			} else {
				path = "/"
			}
		}
		path, query, _ := strings.Cut(path, "?")
		var status int
		var body any
		switch {
		case path != "/" && path != "/fail" && path != "/slow":
			status, body = 404, map[string]string{"error": "not found", "path": path}
		case method != "GET" && method != "HEAD":
			status, body = 405, map[string]string{"error": "method not allowed"}
		case path == "/fail":
			// For trying the call log: a server error, with the caller's trace id.
			status, body = 500, map[string]string{"error": "simulated failure", "traceparent": hdr.Get("Traceparent")}
		case path == "/slow":
			ms := sandboxSlow
			if v, err := strconv.Atoi(strings.TrimPrefix(query, "ms=")); err == nil && strings.HasPrefix(query, "ms=") {
				ms = min(max(v, 0), sandboxSlowMax)
			}
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-s.done():
				return
			}
			status, body = 200, map[string]any{"service": "orders", "message": "slow answer", "delayMs": ms}
		default:
			status, body = 200, struct {
				Service string `json:"service"`
				Message string `json:"message"`
				Time    string `json:"time"`
			}{"orders", "hello from the private network", s.now().UTC().Format(time.RFC3339Nano)}
		}
		if err := writeHTTP(c, method, status, body, keepAlive); err != nil || !keepAlive {
			return
		}
	}
}

var statusText = map[int]string{200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
	500: "Internal Server Error", 501: "Not Implemented"}

// The delay of /slow: default, and the most ?ms= may ask for.
const (
	sandboxSlow    = 500
	sandboxSlowMax = 10000
)

func writeHTTP(w io.Writer, method string, status int, body any, keepAlive bool) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	conn := "close"
	if keepAlive {
		conn = "keep-alive"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, statusText[status])
	fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\nConnection: %s\r\nServer: tether-sandbox\r\n", len(data), conn)
	if status == 405 {
		b.WriteString("Allow: GET, HEAD\r\n")
	}
	b.WriteString("\r\n")
	if method != "HEAD" {
		b.Write(data)
	}
	_, err = io.WriteString(w, b.String())
	return err
}
