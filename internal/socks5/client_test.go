package socks5

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/loopback"
)

// testServer is a SOCKS5 server on loopback built from this package's
// server side. It answers every CONNECT with reply(target) and, on
// success, writes "hello <target>" right behind the reply (a server-first
// protocol), then echoes.
type testServer struct {
	addr    string
	targets chan string
}

func startServer(t *testing.T, auth Auth, reply func(target string) []byte) *testServer {
	t.Helper()
	s := &testServer{targets: make(chan string, 16)}
	s.addr = loopback.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		rw := struct {
			io.Reader
			io.Writer
		}{br, c}
		buf := make([]byte, BufSize)
		if ServerAuth(rw, buf, auth) != nil {
			return
		}
		_, target, err := ReadRequest(br, buf)
		if err != nil {
			return
		}
		s.targets <- target
		msg := reply(target)
		if msg[1] != byte(Succeeded) {
			c.Write(msg)
			return
		}
		c.Write(append(msg, "hello "+target+"\n"...))
		io.Copy(c, br)
	})
	return s
}

func ok(string) []byte { return []byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0} }

func TestDial(t *testing.T) {
	auth := Auth{Check: check}
	tests := []struct {
		name       string
		auth       Auth
		user, pass string
		target     string
		reply      func(string) []byte
		wantTarget string // as the server read it
		err        error
	}{
		{"ipv4", auth, string(testUser), string(testPass), "10.1.2.3:5432", ok, "10.1.2.3:5432", nil},
		{"ipv6", auth, string(testUser), string(testPass), "[fd00::7]:80", ok, "[fd00::7]:80", nil},
		{"ipv4-mapped", auth, string(testUser), string(testPass), "[::ffff:10.1.2.3]:80", ok, "10.1.2.3:80", nil},
		{"domain", auth, string(testUser), string(testPass), "db.vpc.internal:5432", ok, "db.vpc.internal:5432", nil},
		{"no auth", Auth{NoAuth: func() bool { return true }}, "", "", "db:1", ok, "db:1", nil},
		{"ipv6 bind address", auth, string(testUser), string(testPass), "db:1",
			func(string) []byte { return append([]byte{5, 0, 0, 4}, make([]byte, 18)...) }, "db:1", nil},
		{"domain bind address", auth, string(testUser), string(testPass), "db:1",
			func(string) []byte { return append([]byte{5, 0, 0, 3, 4}, "host\x00\x50"...) }, "db:1", nil},
		{"wrong password", auth, string(testUser), "nope", "db:1", ok, "", ErrAuthFailed},
		{"auth required", auth, "", "", "db:1", ok, "", ErrNoAcceptableMethod},
		{"refused", auth, string(testUser), string(testPass), "db:1",
			func(string) []byte { return []byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0} }, "db:1", &ReplyError{ConnectionRefused}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.auth, tt.reply)
			d := &Dialer{Proxy: s.addr, User: tt.user, Password: tt.pass}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", tt.target)
			if tt.wantTarget != "" {
				if got := <-s.targets; got != tt.wantTarget {
					t.Errorf("server read target %q, want %q", got, tt.wantTarget)
				}
			}
			if tt.err != nil {
				var re, want *ReplyError
				if errors.As(tt.err, &want) {
					if !errors.As(err, &re) || *re != *want {
						t.Fatalf("err = %v, want %v", err, tt.err)
					}
				} else if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			// The bytes the server sent right behind its reply are the
			// stream's, not the handshake's.
			br := bufio.NewReader(c)
			if line, err := br.ReadString('\n'); err != nil || line != "hello "+tt.wantTarget+"\n" {
				t.Fatalf("first line %q, %v", line, err)
			}
			c.Write([]byte("ping\n"))
			if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
				t.Fatalf("echo %q, %v", line, err)
			}
		})
	}
}

func TestDialBadTarget(t *testing.T) {
	d := &Dialer{Proxy: loopback.Serve(t, func(c net.Conn) { io.Copy(io.Discard, c) })}
	for _, target := range []string{"nohost", "db:port", "db:70000", strings.Repeat("a", 256) + ":1"} {
		if _, err := d.DialContext(context.Background(), "tcp", target); err == nil {
			t.Errorf("%q: no error", target)
		}
	}
	if _, err := d.DialContext(context.Background(), "udp", "db:53"); err == nil {
		t.Error("udp: no error")
	}
}

// A server that never answers: the handshake ends with the context or the
// handshake timeout.
func TestDialStuckServer(t *testing.T) {
	addr := loopback.Serve(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     func() (context.Context, context.CancelFunc)
	}{
		{"handshake timeout", 100 * time.Millisecond, func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{"context deadline", 0, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}},
		{"context cancel", 0, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			d := &Dialer{Proxy: addr, HandshakeTimeout: tt.timeout}
			t0 := time.Now()
			if _, err := d.DialContext(ctx, "tcp", "db:1"); err == nil {
				t.Fatal("no error")
			}
			if d := time.Since(t0); d > 5*time.Second {
				t.Fatalf("took %s", d)
			}
		})
	}
}
