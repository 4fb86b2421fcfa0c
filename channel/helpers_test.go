package channel

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/routes"
	"github.com/tether-dev/tether/internal/socks5"
	"github.com/tether-dev/tether/tunnel"
)

// fakeTunnel "dials from the far side" on loopback: it records every address
// as requested, resolves names and addresses through hosts, and fails like a
// real tunnel does (*tunnel.DialError). It never dials a non-loopback address.
type fakeTunnel struct {
	hosts map[string]string // name or IP as requested -> loopback IP

	mu     sync.Mutex
	dialed []string
}

func (f *fakeTunnel) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	f.mu.Lock()
	f.dialed = append(f.dialed, address)
	f.mu.Unlock()
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &tunnel.DialError{Address: address, Reason: tunnel.Other, Err: err}
	}
	if ip, ok := f.hosts[strings.TrimSuffix(strings.ToLower(host), ".")]; ok {
		host = ip
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, &tunnel.DialError{Address: address, Reason: tunnel.NoSuchHost, Err: errors.New("no such host")}
	}
	if !ip.IsLoopback() {
		return nil, &tunnel.DialError{Address: address, Reason: tunnel.Unreachable, Err: syscall.EHOSTUNREACH}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, net.JoinHostPort(host, port))
	if err != nil {
		reason := tunnel.Other
		if errors.Is(err, syscall.ECONNREFUSED) {
			reason = tunnel.Refused
		}
		return nil, &tunnel.DialError{Address: address, Reason: reason, Err: err}
	}
	return conn, nil
}

func (f *fakeTunnel) Dialed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.dialed...)
}

func (f *fakeTunnel) Listen(context.Context, string, string) (net.Listener, error) {
	return nil, errors.New("not implemented")
}
func (f *fakeTunnel) State() tunnel.State             { return tunnel.Connected }
func (f *fakeTunnel) Watch(func(tunnel.Event)) func() { return func() {} }
func (f *fakeTunnel) Close() error                    { return nil }

// startEcho starts a loopback echo server that echoes until EOF, then
// half-closes. It returns its port.
func startEcho(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// closedPort returns a loopback port that nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}

// recorder collects the Records of a Channel.
type recorder struct {
	mu   sync.Mutex
	recs []Record
}

func (r *recorder) add(rec Record) { r.mu.Lock(); r.recs = append(r.recs, rec); r.mu.Unlock() }

// wait returns the records once there are n of them.
func (r *recorder) wait(t testing.TB, n int) []Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.mu.Lock()
		recs := append([]Record(nil), r.recs...)
		r.mu.Unlock()
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d records, want %d: %+v", len(recs), n, recs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startChannel starts a Channel with a fake tunnel routing vpc.internal and
// 10.10.0.0/16; 10.10.0.5 is the far-side address of 127.0.0.1.
func startChannel(t testing.TB, mod func(*Config)) (*Channel, *fakeTunnel, *recorder) {
	t.Helper()
	ft := &fakeTunnel{hosts: map[string]string{
		"echo.vpc.internal": "127.0.0.1",
		"web.vpc.internal":  "127.0.0.1",
		"10.10.0.5":         "127.0.0.1",
	}}
	rec := &recorder{}
	rt, err := routes.Parse([]string{"10.10.0.0/16"}, []string{"vpc.internal"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Tunnel: ft, Routes: rt, OnConn: rec.add}
	if mod != nil {
		mod(&cfg)
	}
	c, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, ft, rec
}

// socksClient is a minimal SOCKS5 client for byte-exact checks.

// socksGreet sends the method negotiation offering methods and returns the
// chosen method.
func socksGreet(t testing.TB, conn net.Conn, methods ...byte) byte {
	t.Helper()
	if _, err := conn.Write(append([]byte{5, byte(len(methods))}, methods...)); err != nil {
		t.Fatal(err)
	}
	var b [2]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		t.Fatalf("greeting reply: %v", err)
	}
	if b[0] != 5 {
		t.Fatalf("greeting reply version %d", b[0])
	}
	return b[1]
}

// socksLogin sends RFC 1929 credentials and returns the status.
func socksLogin(t testing.TB, conn net.Conn, user, pass string) byte {
	t.Helper()
	msg := append([]byte{1, byte(len(user))}, user...)
	msg = append(append(msg, byte(len(pass))), pass...)
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	var b [2]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		t.Fatalf("auth reply: %v", err)
	}
	if b[0] != 1 {
		t.Fatalf("auth reply version %d", b[0])
	}
	return b[1]
}

// socksConnect sends a request with a domain address (or an IPv4 one if host
// parses as IPv4) and returns the reply code.
func socksConnect(t testing.TB, conn net.Conn, cmd byte, host string, port uint16) socks5.Reply {
	t.Helper()
	msg := []byte{5, cmd, 0}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		a := ip.As4()
		msg = append(append(msg, 1), a[:]...)
	} else {
		msg = append(append(msg, 3, byte(len(host))), host...)
	}
	msg = binary.BigEndian.AppendUint16(msg, port)
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	var b [10]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		t.Fatalf("request reply: %v", err)
	}
	if b[0] != 5 || b[3] != 1 {
		t.Fatalf("reply %v", b)
	}
	return socks5.Reply(b[1])
}

// socksOpen logs in to c and connects to host:port, returning the reply.
func socksOpen(t testing.TB, c *Channel, host string, port uint16) (net.Conn, socks5.Reply) {
	t.Helper()
	conn, err := net.Dial("tcp", c.SOCKSAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if m := socksGreet(t, conn, 0, 2); m != 2 {
		t.Fatalf("method %#x, want 2", m)
	}
	if s := socksLogin(t, conn, c.Username(), c.Password()); s != 0 {
		t.Fatalf("auth status %d", s)
	}
	return conn, socksConnect(t, conn, 1, host, port)
}

// expectEOF checks that the server closed conn.
func expectEOF(t testing.TB, conn net.Conn) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var b [1]byte
	if n, err := conn.Read(b[:]); err == nil {
		t.Fatalf("read %d bytes, want EOF", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection not closed")
	}
}
