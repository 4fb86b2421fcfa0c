package channel

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

func TestReadRequest(t *testing.T) {
	domain := func(name string, port uint16) []byte {
		return append(append([]byte{5, 1, 0, 3, byte(len(name))}, name...), byte(port>>8), byte(port))
	}
	tests := []struct {
		name   string
		in     []byte
		target string
		rep    byte // 0: no requestError expected
		ioErr  bool
	}{
		{"ipv4", []byte{5, 1, 0, 1, 10, 10, 0, 5, 0x15, 0x38}, "10.10.0.5:5432", 0, false},
		{"ipv6", append(append([]byte{5, 1, 0, 4}, net.ParseIP("fd00::1")...), 0, 80), "[fd00::1]:80", 0, false},
		{"ipv4-mapped ipv6", append(append([]byte{5, 1, 0, 4}, net.ParseIP("10.1.2.3").To16()...), 0, 80), "10.1.2.3:80", 0, false},
		{"domain", domain("db.vpc.internal", 5432), "db.vpc.internal:5432", 0, false},
		{"domain keeps case", domain("DB.Vpc.Internal.", 1), "DB.Vpc.Internal.:1", 0, false},
		{"domain holding ipv4", domain("10.0.0.1", 22), "10.0.0.1:22", 0, false},
		{"domain holding ipv6", domain("::1", 22), "[::1]:22", 0, false},
		{"domain with colon", domain("evil:22", 80), "", repHostUnreachable, false},
		{"domain with slash", domain("a/b", 80), "", repHostUnreachable, false},
		{"empty domain", domain("", 80), "", repHostUnreachable, false},
		{"domain empty label", domain("a..b", 80), "", repHostUnreachable, false},
		{"bind", []byte{5, 2, 0, 1, 127, 0, 0, 1, 0, 80}, "127.0.0.1:80", repCmdNotSupported, false},
		{"udp associate", []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}, "0.0.0.0:0", repCmdNotSupported, false},
		{"bad address type", []byte{5, 1, 0, 9, 1, 2, 3, 4, 0, 80}, "", repAddrNotSupported, false},
		{"truncated ipv4", []byte{5, 1, 0, 1, 10, 10}, "", 0, true},
		{"truncated domain", []byte{5, 1, 0, 3, 10, 'a', 'b'}, "", 0, true},
		{"empty", nil, "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, socksBufSize)
			_, target, err := readRequest(bytes.NewReader(tt.in), buf)
			var re *requestError
			switch {
			case tt.ioErr:
				if err == nil || errors.As(err, &re) {
					t.Fatalf("err = %v, want an I/O error", err)
				}
			case tt.rep != 0:
				if !errors.As(err, &re) || re.rep != tt.rep {
					t.Fatalf("err = %v, want reply %#x", err, tt.rep)
				}
			case err != nil:
				t.Fatalf("err = %v", err)
			}
			if target != tt.target {
				t.Errorf("target = %q, want %q", target, tt.target)
			}
		})
	}
	if _, _, err := readRequest(bytes.NewReader([]byte{4, 1, 0, 1, 1, 2, 3, 4, 0, 80}), make([]byte, socksBufSize)); !errors.Is(err, errSOCKSVersion) {
		t.Errorf("SOCKS4 request: err = %v", err)
	}
}

// FuzzReadRequest checks that the request parser never panics, never reads
// past the request, and only returns targets that are well-formed host:port.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte{5, 1, 0, 1, 10, 10, 0, 5, 0x15, 0x38})
	f.Add(append([]byte{5, 1, 0, 3, 15}, "db.vpc.internal\x15\x38"...))
	f.Add(append(append([]byte{5, 1, 0, 4}, net.ParseIP("fd00::1")...), 0, 80))
	f.Add([]byte{5, 2, 0, 3, 3, '[', ':', ']', 0, 80})
	f.Add([]byte{5, 1, 0, 3, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		buf := make([]byte, socksBufSize)
		cmd, target, err := readRequest(r, buf)
		consumed := len(data) - r.Len()
		if consumed > 4+1+255+2 {
			t.Fatalf("consumed %d bytes", consumed)
		}
		var re *requestError
		if err != nil && !errors.As(err, &re) {
			return
		}
		if err == nil && cmd != cmdConnect {
			t.Fatalf("cmd %d accepted", cmd)
		}
		if target == "" {
			return
		}
		host, port, serr := net.SplitHostPort(target)
		if serr != nil || host == "" || port == "" {
			t.Fatalf("target %q is not host:port: %v", target, serr)
		}
		if strings.ContainsAny(host, "/@ \x00") {
			t.Fatalf("target %q has a bad host", target)
		}
	})
}

// FuzzSOCKSAuth drives method negotiation and authentication with arbitrary
// bytes: no panic, and success only with the right credentials.
func FuzzSOCKSAuth(f *testing.F) {
	user, pass := []byte("tether-0123abcd"), []byte("p4ssw0rd-p4ssw0rd-p4ssw0")
	good := append([]byte{5, 1, 2, 1, byte(len(user))}, user...)
	good = append(append(good, byte(len(pass))), pass...)
	f.Add(good)
	f.Add([]byte{5, 1, 0})
	f.Add([]byte{5, 2, 0, 2, 1, 0, 0})
	f.Add([]byte{5, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(data), io.Discard}
		err := socksAuth(rw, make([]byte, socksBufSize), user, pass, nil)
		if err == nil && !bytes.Contains(data, pass) {
			t.Fatalf("authenticated without the password: %q", data)
		}
	})
}

func TestSOCKSTrustSameUser(t *testing.T) {
	trusting, _, _ := startChannel(t, func(c *Config) { c.TrustSameUser = true })
	strict, _, _ := startChannel(t, nil)
	for _, tc := range []struct {
		c    *Channel
		want byte
	}{{trusting, 0x00}, {strict, 0xFF}} {
		conn, err := net.Dial("tcp", tc.c.SOCKSAddr())
		if err != nil {
			t.Fatal(err)
		}
		// Offer "no authentication" only, as a process of our own user.
		if got := socksGreet(t, conn, 0x00); got != tc.want {
			t.Errorf("method %#x, want %#x", got, tc.want)
		}
		conn.Close()
	}
}
