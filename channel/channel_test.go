package channel

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/tether-dev/tether/internal/routes"
	"github.com/tether-dev/tether/internal/socks5"
)

func socksDialer(t testing.TB, c *Channel) proxy.ContextDialer {
	t.Helper()
	d, err := proxy.SOCKS5("tcp", c.SOCKSAddr(), &proxy.Auth{User: c.Username(), Password: c.Password()}, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	return d.(proxy.ContextDialer)
}

// closeWrite half-closes conn, also when x/net/proxy has wrapped it.
func closeWrite(conn net.Conn) error {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	inner := reflect.ValueOf(conn).Elem().FieldByName("Conn").Interface().(net.Conn)
	return closeWrite(inner)
}

// roundTrip writes msg, half-closes and reads everything back.
func roundTrip(t testing.TB, conn net.Conn, msg []byte) []byte {
	t.Helper()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(msg)
		if err == nil {
			err = closeWrite(conn)
		}
		errc <- err
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	return got
}

func TestSOCKSThroughTunnel(t *testing.T) {
	c, ft, rec := startChannel(t, nil)
	port := startEcho(t)
	msg := bytes.Repeat([]byte("tether "), 100_000) // larger than the copy buffers

	for _, target := range []string{"echo.vpc.internal:" + port, "ECHO.vpc.internal.:" + port, "10.10.0.5:" + port} {
		conn, err := socksDialer(t, c).DialContext(context.Background(), "tcp", target)
		if err != nil {
			t.Fatalf("dial %s: %v", target, err)
		}
		if got := roundTrip(t, conn, msg); !bytes.Equal(got, msg) {
			t.Fatalf("%s: echoed %d bytes, want %d", target, len(got), len(msg))
		}
		conn.Close()
	}
	want := []string{"echo.vpc.internal:" + port, "ECHO.vpc.internal.:" + port, "10.10.0.5:" + port}
	if got := ft.Dialed(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("tunnel dialled %q, want %q (names unresolved)", got, want)
	}
	for _, r := range rec.wait(t, 3) {
		if r.Route != RouteTunnel || r.Client != ClientSOCKS5 || r.Err != "" ||
			r.Sent != int64(len(msg)) || r.Received != int64(len(msg)) || r.Duration <= 0 || r.Start.IsZero() {
			t.Errorf("record %+v", r)
		}
	}
	s := c.Summary()
	if s.Connections != 3 || s.Tunnel != 3 || s.Direct != 0 || s.Failed != 0 || s.Active != 0 ||
		s.Sent != 3*int64(len(msg)) || s.Received != 3*int64(len(msg)) {
		t.Errorf("summary %+v", s)
	}
}

func TestSOCKSDirect(t *testing.T) {
	var directDialed []string
	var mu sync.Mutex
	c, ft, rec := startChannel(t, func(cfg *Config) {
		cfg.Direct = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			directDialed = append(directDialed, addr)
			mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	})
	port := startEcho(t)
	conn, err := socksDialer(t, c).DialContext(context.Background(), "tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, conn, []byte("hello")); string(got) != "hello" {
		t.Fatalf("echo %q", got)
	}
	if d := ft.Dialed(); len(d) != 0 {
		t.Errorf("tunnel dialled %q for a direct target", d)
	}
	mu.Lock()
	if len(directDialed) != 1 || directDialed[0] != "127.0.0.1:"+port {
		t.Errorf("direct dialled %q", directDialed)
	}
	mu.Unlock()
	r := rec.wait(t, 1)[0]
	if r.Route != RouteDirect || r.Target != "127.0.0.1:"+port || r.Sent != 5 || r.Received != 5 {
		t.Errorf("record %+v", r)
	}
}

func TestSOCKSRouteAll(t *testing.T) {
	c, ft, _ := startChannel(t, func(cfg *Config) { cfg.RouteAll = true })
	port := startEcho(t)
	conn, err := socksDialer(t, c).DialContext(context.Background(), "tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, conn, []byte("x")); string(got) != "x" {
		t.Fatalf("echo %q", got)
	}
	if d := ft.Dialed(); len(d) != 1 {
		t.Errorf("tunnel dialled %q, want the one target", d)
	}
}

func TestSOCKSIPv6Target(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	ln.Close()
	c, ft, _ := startChannel(t, func(cfg *Config) { cfg.RouteAll = true })
	ft.hosts["::1"] = "127.0.0.1"
	port := startEcho(t)
	conn, err := socksDialer(t, c).DialContext(context.Background(), "tcp", "[::1]:"+port)
	if err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, conn, []byte("v6")); string(got) != "v6" {
		t.Fatalf("echo %q", got)
	}
	if d := ft.Dialed(); len(d) != 1 || d[0] != "[::1]:"+port {
		t.Errorf("tunnel dialled %q", d)
	}
}

func TestSOCKSRefusesNoAuth(t *testing.T) {
	c, _, _ := startChannel(t, nil)
	for _, methods := range [][]byte{{0}, {0, 1}, {}} {
		conn, err := net.Dial("tcp", c.SOCKSAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		if m := socksGreet(t, conn, methods...); m != 0xFF {
			t.Errorf("methods %v: chose %#x, want 0xFF", methods, m)
		}
		expectEOF(t, conn)
	}
}

func TestSOCKSRefusesWrongCredentials(t *testing.T) {
	c, ft, _ := startChannel(t, nil)
	other, _, _ := startChannel(t, nil)
	tests := []struct{ name, user, pass string }{
		{"wrong password", c.Username(), c.Password() + "x"},
		{"password prefix", c.Username(), c.Password()[:23]},
		{"wrong user", "tether-00000000", c.Password()},
		{"empty", "", ""},
		{"other session", other.Username(), other.Password()},
		{"swapped", c.Password(), c.Username()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", c.SOCKSAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			if m := socksGreet(t, conn, 2); m != 2 {
				t.Fatalf("method %#x", m)
			}
			if s := socksLogin(t, conn, tt.user, tt.pass); s != 1 {
				t.Fatalf("auth status %d, want 1 (failure)", s)
			}
			expectEOF(t, conn)
		})
	}
	// The library client reports the failure too.
	d, _ := proxy.SOCKS5("tcp", c.SOCKSAddr(), &proxy.Auth{User: c.Username(), Password: "nope"}, proxy.Direct)
	if _, err := d.Dial("tcp", "echo.vpc.internal:1"); err == nil {
		t.Error("dial with a wrong password succeeded")
	}
	if len(ft.Dialed()) != 0 || c.Summary().Connections != 0 {
		t.Errorf("unauthenticated clients reached the tunnel: %q", ft.Dialed())
	}
}

func TestCredentials(t *testing.T) {
	c1, _, _ := startChannel(t, nil)
	c2, _, _ := startChannel(t, nil)
	userRE := regexp.MustCompile(`^tether-[0-9a-f]{8}$`)
	passRE := regexp.MustCompile(`^[A-Za-z0-9_-]{24}$`)
	for _, c := range []*Channel{c1, c2} {
		if !userRE.MatchString(c.Username()) || !passRE.MatchString(c.Password()) {
			t.Errorf("credentials %q / %q", c.Username(), c.Password())
		}
		for _, addr := range []string{c.SOCKSAddr(), c.HTTPAddr()} {
			if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
				t.Errorf("listening on %s, want loopback", addr)
			}
		}
	}
	if c1.Username() == c2.Username() || c1.Password() == c2.Password() {
		t.Error("two sessions share credentials")
	}
}

func TestSOCKSCommandNotSupported(t *testing.T) {
	c, ft, _ := startChannel(t, nil)
	for _, cmd := range []byte{2, 3, 9} {
		conn, err := net.Dial("tcp", c.SOCKSAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		socksGreet(t, conn, 2)
		socksLogin(t, conn, c.Username(), c.Password())
		if rep := socksConnect(t, conn, cmd, "echo.vpc.internal", 1); rep != socks5.CommandNotSupported {
			t.Errorf("command %d: reply %#x, want 0x07", cmd, rep)
		}
		expectEOF(t, conn)
	}
	if len(ft.Dialed()) != 0 {
		t.Errorf("tunnel dialled %q", ft.Dialed())
	}
}

func TestSOCKSErrorMapping(t *testing.T) {
	c, _, rec := startChannel(t, nil)
	closed := closedPort(t)
	p, _ := strconv.Atoi(closed)
	tests := []struct {
		host    string
		rep     socks5.Reply
		route   string
		errText string
	}{
		{"echo.vpc.internal", socks5.ConnectionRefused, RouteTunnel, "echo.vpc.internal:" + closed + " refused by the proxy machine"},
		{"nosuch.vpc.internal", socks5.HostUnreachable, RouteTunnel, "nosuch.vpc.internal: no such host on the proxy machine"},
		{"10.10.9.9", socks5.HostUnreachable, RouteTunnel, "10.10.9.9:" + closed + " unreachable from the proxy machine"},
		{"127.0.0.1", socks5.ConnectionRefused, RouteDirect, "connection refused"},
	}
	for i, tt := range tests {
		conn, rep := socksOpen(t, c, tt.host, uint16(p))
		if rep != tt.rep {
			t.Errorf("%s: reply %#x, want %#x", tt.host, rep, tt.rep)
		}
		expectEOF(t, conn)
		r := rec.wait(t, i+1)[i]
		if r.Route != tt.route || !strings.Contains(r.Err, tt.errText) || r.Target != net.JoinHostPort(tt.host, closed) {
			t.Errorf("%s: record %+v, want Err containing %q", tt.host, r, tt.errText)
		}
	}
	s := c.Summary()
	if s.Failed != int64(len(tests)) || len(s.Failures) != len(tests) || s.Connections != int64(len(tests)) {
		t.Errorf("summary %+v", s)
	}
	// The library client surfaces the reply text.
	_, err := socksDialer(t, c).DialContext(context.Background(), "tcp", "echo.vpc.internal:"+closed)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("x/net/proxy error = %v", err)
	}
}

func TestSummaryKeepsLastFailures(t *testing.T) {
	c, _, rec := startChannel(t, nil)
	p, _ := strconv.Atoi(closedPort(t))
	n := maxFailures + 5
	for range n {
		conn, _ := socksOpen(t, c, "nosuch.vpc.internal", uint16(p))
		conn.Close()
	}
	rec.wait(t, n)
	s := c.Summary()
	if s.Failed != int64(n) || len(s.Failures) != maxFailures {
		t.Errorf("failed %d, kept %d", s.Failed, len(s.Failures))
	}
}

func TestHalfClose(t *testing.T) {
	// The target answers only after the app has finished sending.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		b, _ := io.ReadAll(conn)
		fmt.Fprintf(conn, "got %d bytes", len(b))
	}()
	c, _, rec := startChannel(t, nil)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	conn, err := socksDialer(t, c).DialContext(context.Background(), "tcp", "echo.vpc.internal:"+port)
	if err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, conn, make([]byte, 100_000)); string(got) != "got 100000 bytes" {
		t.Fatalf("reply %q", got)
	}
	if r := rec.wait(t, 1)[0]; r.Sent != 100_000 || r.Received != 16 {
		t.Errorf("record %+v", r)
	}
}

// waitGoroutines waits until at most max goroutines run.
func waitGoroutines(t *testing.T, max int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for runtime.NumGoroutine() > max {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), max, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseEndsLiveConnections(t *testing.T) {
	port := startEcho(t)
	base := runtime.NumGoroutine()
	c, _, rec := startChannel(t, nil)
	const n = 50
	var conns []net.Conn
	for i := range n {
		target := "echo.vpc.internal:" + port
		if i%2 == 1 {
			target = "127.0.0.1:" + port // direct
		}
		conn, err := socksDialer(t, c).DialContext(context.Background(), "tcp", target)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		var b [4]byte
		if _, err := io.ReadFull(conn, b[:]); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	// Plus live HTTP CONNECT tunnels and a client stuck in the handshake.
	for range 5 {
		conns = append(conns, httpConnect(t, c, "echo.vpc.internal:"+port, true))
	}
	stuck, err := net.Dial("tcp", c.SOCKSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	stuck.Write([]byte{5})

	if s := c.Summary(); s.Active != n+5 {
		t.Errorf("active %d, want %d", s.Active, n+5)
	}
	done := make(chan error)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, conn := range append(conns, stuck) {
		expectEOF(t, conn)
	}
	if recs := rec.wait(t, n+5); len(recs) != n+5 {
		t.Errorf("%d records", len(recs))
	}
	if _, err := net.Dial("tcp", c.SOCKSAddr()); err == nil {
		t.Error("SOCKS listener still open")
	}
	if _, err := net.Dial("tcp", c.HTTPAddr()); err == nil {
		t.Error("HTTP listener still open")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, conn := range conns {
		conn.Close()
	}
	stuck.Close()
	waitGoroutines(t, base+3)
}

func TestStartContextCancelCloses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Start(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.Dial("tcp", c.SOCKSAddr())
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still open after the context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()
}

func TestStartNeedsTunnelForRoutes(t *testing.T) {
	if _, err := Start(context.Background(), Config{RouteAll: true}); err == nil {
		t.Error("RouteAll without a tunnel accepted")
	}
	r, _ := routes.Parse(nil, []string{"vpc.internal"})
	if _, err := Start(context.Background(), Config{Routes: r}); err == nil {
		t.Error("routes without a tunnel accepted")
	}
}

func TestSOCKSParallel(t *testing.T) {
	c, _, rec := startChannel(t, nil)
	port := startEcho(t)
	const n = 1000
	d := socksDialer(t, c)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			target := "echo.vpc.internal:" + port
			if i%4 == 0 {
				target = "127.0.0.1:" + port
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			conn, err := d.DialContext(ctx, "tcp", target)
			if err != nil {
				errs <- fmt.Errorf("conn %d: %w", i, err)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(60 * time.Second))
			msg := fmt.Sprintf("hello %d", i)
			if _, err := io.WriteString(conn, msg); err != nil {
				errs <- fmt.Errorf("conn %d: %w", i, err)
				return
			}
			closeWrite(conn)
			got, err := io.ReadAll(conn)
			if err != nil || string(got) != msg {
				errs <- fmt.Errorf("conn %d: echo %q, %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rec.wait(t, n)
	s := c.Summary()
	if s.Connections != n || s.Failed != 0 || s.Direct != n/4 || s.Tunnel != n-n/4 {
		t.Errorf("summary %+v", s)
	}
}

// blockingTunnel's dials wait until their context ends.
type blockingTunnel struct {
	fakeTunnel
	started chan struct{}
}

func (b *blockingTunnel) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	b.started <- struct{}{}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCloseCancelsPendingDial(t *testing.T) {
	bt := &blockingTunnel{started: make(chan struct{}, 1)}
	c, _, rec := startChannel(t, func(cfg *Config) { cfg.Tunnel = bt })
	conn, err := net.Dial("tcp", c.SOCKSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	socksGreet(t, conn, 2)
	socksLogin(t, conn, c.Username(), c.Password())
	conn.Write([]byte{5, 1, 0, 3, 17, 'e', 'c', 'h', 'o', '.', 'v', 'p', 'c', '.', 'i', 'n', 't', 'e', 'r', 'n', 'a', 'l', 0, 80})
	<-bt.started
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waits for a pending dial")
	}
	if r := rec.wait(t, 1)[0]; !strings.Contains(r.Err, "canceled") {
		t.Errorf("record %+v", r)
	}
}

func TestDialTimeout(t *testing.T) {
	bt := &blockingTunnel{started: make(chan struct{}, 1)}
	c, _, rec := startChannel(t, func(cfg *Config) { cfg.Tunnel = bt; cfg.DialTimeout = 50 * time.Millisecond })
	conn, rep := socksOpen(t, c, "echo.vpc.internal", 80)
	<-bt.started
	if rep != socks5.HostUnreachable {
		t.Errorf("reply %#x, want host unreachable", rep)
	}
	expectEOF(t, conn)
	if r := rec.wait(t, 1)[0]; !strings.Contains(r.Err, "deadline") {
		t.Errorf("record %+v", r)
	}
}
