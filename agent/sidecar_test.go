package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/internal/loopback"
	"github.com/tether-dev/tether/internal/socks5"
	"github.com/tether-dev/tether/tunnel"
)

// scTunnel is a tunnel.Tunnel that records the addresses dialled and
// connects them all to one loopback backend, except those in refuse.
type scTunnel struct {
	backend string
	refuse  map[string]bool

	mu    sync.Mutex
	dials []string
}

func (r *scTunnel) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	r.mu.Lock()
	r.dials = append(r.dials, addr)
	r.mu.Unlock()
	if r.refuse[addr] {
		return nil, &tunnel.DialError{Address: addr, Reason: tunnel.Refused, Side: "the test tunnel", Err: errors.New("refused")}
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", r.backend)
}

func (r *scTunnel) Listen(context.Context, string, string) (net.Listener, error) {
	return nil, errors.New("not supported")
}
func (r *scTunnel) State() tunnel.State             { return tunnel.Connected }
func (r *scTunnel) Watch(func(tunnel.Event)) func() { return func() {} }
func (r *scTunnel) Close() error                    { return nil }

func (r *scTunnel) dialled() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.dials...)
}

// scStartEcho serves on ln: echo everything, and after the client's half-close
// write "|eof" and close.
func scStartEcho(t testing.TB, ln net.Listener) {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.Write([]byte("|eof"))
			}()
		}
	}()
}

// scStartChannel starts a channel that routes everything through a scTunnel
// to an echo server.
func scStartChannel(t testing.TB, refuse ...string) (*channel.Channel, *scTunnel) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scStartEcho(t, ln)
	rt := &scTunnel{backend: ln.Addr().String(), refuse: map[string]bool{}}
	for _, r := range refuse {
		rt.refuse[r] = true
	}
	ch, err := channel.Start(context.Background(), channel.Config{Tunnel: rt, RouteAll: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch, rt
}

// scRoundTrip writes msg, half-closes and reads everything back.
func scRoundTrip(t testing.TB, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestSOCKSConnect(t *testing.T) {
	ch, rt := scStartChannel(t, "203.0.113.9:81")
	s := &sidecar{upstream: &socks5.Dialer{Proxy: ch.SOCKSAddr(), User: ch.Username(), Password: ch.Password()}}
	ctx := context.Background()
	for _, target := range []string{"db.vpc.internal:5432", "203.0.113.7:80", "[2001:db8::7]:443"} {
		up, err := s.upstream.DialContext(ctx, "tcp", target)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if got := scRoundTrip(t, up, "hello "+target); got != "hello "+target+"|eof" {
			t.Errorf("%s: got %q", target, got)
		}
		up.Close()
	}
	want := []string{"db.vpc.internal:5432", "203.0.113.7:80", "[2001:db8::7]:443"}
	if got := rt.dialled(); !slices.Equal(got, want) {
		t.Errorf("tunnel dialled %q, want %q", got, want)
	}

	_, err := s.upstream.DialContext(ctx, "tcp", "203.0.113.9:81")
	if re := (*socks5.ReplyError)(nil); !errors.As(err, &re) || re.Reply != socks5.ConnectionRefused {
		t.Errorf("refused target: err %v, want connection refused", err)
	}
	s.upstream.Password = "wrong"
	if _, err := s.upstream.DialContext(ctx, "tcp", "203.0.113.7:80"); err == nil {
		t.Error("wrong password accepted")
	}
}

// TestSidecarConnAfterStop: a connection that the sidecar accepts while it
// stops (after it closed the live ones) is closed, not carried or leaked.
func TestSidecarConnAfterStop(t *testing.T) {
	app, c := loopback.Pair(t)
	s := &sidecar{log: slog.New(slog.DiscardHandler)}
	s.conns.CloseAll() // what RunSidecar does when it stops
	done := make(chan struct{})
	go func() { s.serveConn(context.Background(), c); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("serveConn went on after the sidecar stopped")
	}
	app.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := app.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the app's connection: read err %v, want EOF", err)
	}
	if n := s.conns.Len(); n != 0 {
		t.Errorf("%d connections left in the set", n)
	}
}

func TestRunSidecarConfigErrors(t *testing.T) {
	// The base upstream is invalid too, so that no case can get as far as
	// installing rules in the test's own network namespace; each case must
	// fail for its own reason, checked before the upstream.
	base := SidecarConfig{Upstream: "no-port", User: "u", Password: "p", TCPPort: 15001, DNSPort: 53, FakeCIDR: "198.18.0.0/15"}
	for name, tc := range map[string]struct {
		mod  func(*SidecarConfig)
		want string
	}{
		"no password": {func(c *SidecarConfig) { c.Password = "" }, "credentials"},
		"same ports":  {func(c *SidecarConfig) { c.DNSPort = 15001 }, "must differ"},
		"bad port":    {func(c *SidecarConfig) { c.TCPPort = 70000 }, "out of range"},
		"bad cidr":    {func(c *SidecarConfig) { c.FakeCIDR = "2001:db8::/64" }, "IPv4 prefix"},
		"bad domain":  {func(c *SidecarConfig) { c.Domains = []string{"a b"} }, `route domain "a b"`},
		"bad upstr":   {func(c *SidecarConfig) {}, "no-port"},
	} {
		cfg := base
		tc.mod(&cfg)
		if err := RunSidecar(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
}
