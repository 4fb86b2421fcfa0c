package socks5

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
		rep    Reply // 0: no RequestError expected
		ioErr  bool
	}{
		{"ipv4", []byte{5, 1, 0, 1, 10, 10, 0, 5, 0x15, 0x38}, "10.10.0.5:5432", 0, false},
		{"ipv6", append(append([]byte{5, 1, 0, 4}, net.ParseIP("fd00::1")...), 0, 80), "[fd00::1]:80", 0, false},
		{"ipv4-mapped ipv6", append(append([]byte{5, 1, 0, 4}, net.ParseIP("10.1.2.3").To16()...), 0, 80), "10.1.2.3:80", 0, false},
		{"domain", domain("db.vpc.internal", 5432), "db.vpc.internal:5432", 0, false},
		{"domain keeps case", domain("DB.Vpc.Internal.", 1), "DB.Vpc.Internal.:1", 0, false},
		{"domain with underscore", domain("_svc.db", 1), "_svc.db:1", 0, false},
		{"domain holding ipv4", domain("10.0.0.1", 22), "10.0.0.1:22", 0, false},
		{"domain holding ipv6", domain("::1", 22), "[::1]:22", 0, false},
		{"domain with colon", domain("evil:22", 80), "", HostUnreachable, false},
		{"domain with slash", domain("a/b", 80), "", HostUnreachable, false},
		{"domain with zone", domain("fe80::1%eth0", 80), "", HostUnreachable, false},
		{"empty domain", domain("", 80), "", HostUnreachable, false},
		{"domain empty label", domain("a..b", 80), "", HostUnreachable, false},
		{"domain long label", domain(strings.Repeat("a", 64)+".b", 80), "", HostUnreachable, false},
		{"bind", []byte{5, 2, 0, 1, 127, 0, 0, 1, 0, 80}, "127.0.0.1:80", CommandNotSupported, false},
		{"udp associate", []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}, "0.0.0.0:0", CommandNotSupported, false},
		{"bad address type", []byte{5, 1, 0, 9, 1, 2, 3, 4, 0, 80}, "", AddressNotSupported, false},
		{"truncated ipv4", []byte{5, 1, 0, 1, 10, 10}, "", 0, true},
		{"truncated domain", []byte{5, 1, 0, 3, 10, 'a', 'b'}, "", 0, true},
		{"empty", nil, "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if !tt.ioErr {
				in = append(in, "next"...) // the app's first bytes
			}
			r := bytes.NewReader(in)
			_, target, err := ReadRequest(r, make([]byte, BufSize))
			var re *RequestError
			switch {
			case tt.ioErr:
				if err == nil || errors.As(err, &re) {
					t.Fatalf("err = %v, want an I/O error", err)
				}
			case tt.rep != 0:
				if !errors.As(err, &re) || re.Reply != tt.rep {
					t.Fatalf("err = %v, want reply %v", err, tt.rep)
				}
			case err != nil:
				t.Fatalf("err = %v", err)
			}
			if target != tt.target {
				t.Errorf("target = %q, want %q", target, tt.target)
			}
			if !tt.ioErr && tt.rep != AddressNotSupported && r.Len() != len("next") {
				t.Errorf("%d bytes after the request left, want 4", r.Len())
			}
		})
	}
	if _, _, err := ReadRequest(bytes.NewReader([]byte{4, 1, 0, 1, 1, 2, 3, 4, 0, 80}), make([]byte, BufSize)); !errors.Is(err, ErrVersion) {
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
		cmd, target, err := ReadRequest(r, make([]byte, BufSize))
		if consumed := len(data) - r.Len(); consumed > 4+1+255+2 {
			t.Fatalf("consumed %d bytes", consumed)
		}
		var re *RequestError
		if err != nil && !errors.As(err, &re) {
			return
		}
		if err == nil && cmd != CmdConnect {
			t.Fatalf("cmd %d accepted", cmd)
		}
		if target == "" {
			return
		}
		host, port, serr := net.SplitHostPort(target)
		if serr != nil || host == "" || port == "" {
			t.Fatalf("target %q is not host:port: %v", target, serr)
		}
		if strings.ContainsAny(host, "/@ %\x00") {
			t.Fatalf("target %q has a bad host", target)
		}
	})
}

var (
	testUser = []byte("tether-0123abcd")
	testPass = []byte("p4ssw0rd-p4ssw0rd-p4ssw0")
)

func userPass(user, pass []byte) []byte {
	b := append([]byte{1, byte(len(user))}, user...)
	return append(append(b, byte(len(pass))), pass...)
}

func check(user, pass []byte) bool { return bytes.Equal(user, testUser) && bytes.Equal(pass, testPass) }

func TestServerAuth(t *testing.T) {
	yes := func() bool { return true }
	no := func() bool { return false }
	tests := []struct {
		name string
		in   []byte
		auth Auth
		out  []byte // what the server writes
		err  error  // nil, or the error to match with errors.Is; errAny: some error
	}{
		{"user/pass", append([]byte{5, 1, 2}, userPass(testUser, testPass)...), Auth{Check: check}, []byte{5, 2, 1, 0}, nil},
		{"user/pass among others", append([]byte{5, 3, 0, 1, 2}, userPass(testUser, testPass)...), Auth{Check: check, NoAuth: yes}, []byte{5, 2, 1, 0}, nil},
		{"wrong password", append([]byte{5, 1, 2}, userPass(testUser, []byte("nope"))...), Auth{Check: check}, []byte{5, 2, 1, 1}, ErrAuthFailed},
		{"empty user and password", append([]byte{5, 1, 2}, userPass(nil, nil)...), Auth{Check: check}, []byte{5, 2, 1, 1}, ErrAuthFailed},
		{"longest user and password", append([]byte{5, 1, 2}, userPass(bytes.Repeat([]byte{'u'}, 255), bytes.Repeat([]byte{'p'}, 255))...),
			Auth{Check: func(u, p []byte) bool { return len(u) == 255 && len(p) == 255 && u[254] == 'u' && p[254] == 'p' }}, []byte{5, 2, 1, 0}, nil},
		{"no auth refused", []byte{5, 1, 0}, Auth{Check: check}, []byte{5, 0xFF}, ErrNoAcceptableMethod},
		{"no auth trusted", []byte{5, 1, 0}, Auth{Check: check, NoAuth: yes}, []byte{5, 0}, nil},
		{"no auth not trusted", []byte{5, 1, 0}, Auth{Check: check, NoAuth: no}, []byte{5, 0xFF}, ErrNoAcceptableMethod},
		{"user/pass not offered by server", []byte{5, 1, 2}, Auth{NoAuth: yes}, []byte{5, 0xFF}, ErrNoAcceptableMethod},
		{"no methods", []byte{5, 0}, Auth{Check: check, NoAuth: yes}, []byte{5, 0xFF}, ErrNoAcceptableMethod},
		{"socks4", []byte{4, 1, 0, 80}, Auth{Check: check}, nil, ErrVersion},
		{"bad auth version", []byte{5, 1, 2, 2, 0, 0}, Auth{Check: check}, []byte{5, 2, 1, 1}, errAny},
		{"truncated password", append([]byte{5, 1, 2}, userPass(testUser, testPass)[:10]...), Auth{Check: check}, []byte{5, 2}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			buf := make([]byte, BufSize)
			err := ServerAuth(struct {
				io.Reader
				io.Writer
			}{bytes.NewReader(tt.in), &out}, buf, tt.auth)
			switch {
			case tt.err == errAny:
				if err == nil {
					t.Fatal("no error")
				}
			case !errors.Is(err, tt.err):
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if !bytes.Equal(out.Bytes(), tt.out) {
				t.Errorf("wrote %v, want %v", out.Bytes(), tt.out)
			}
			if bytes.Contains(buf, testPass) {
				t.Error("the password is left in the buffer")
			}
		})
	}
}

var errAny = errors.New("any error")

// FuzzServerAuth drives the method negotiation and authentication with
// arbitrary bytes: no panic, and success only with the right credentials.
func FuzzServerAuth(f *testing.F) {
	f.Add(append([]byte{5, 1, 2}, userPass(testUser, testPass)...))
	f.Add([]byte{5, 1, 0})
	f.Add([]byte{5, 2, 0, 2, 1, 0, 0})
	f.Add([]byte{5, 0})
	f.Add(append([]byte{5, 1, 2, 1, 255}, bytes.Repeat([]byte{'u'}, 255)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(data), io.Discard}
		err := ServerAuth(rw, make([]byte, BufSize), Auth{Check: check})
		if err == nil && !bytes.Contains(data, testPass) {
			t.Fatalf("authenticated without the password: %q", data)
		}
	})
}

func TestWriteReply(t *testing.T) {
	for _, rep := range []Reply{Succeeded, HostUnreachable, AddressNotSupported, 0x42} {
		var b bytes.Buffer
		if err := WriteReply(&b, rep); err != nil {
			t.Fatal(err)
		}
		if want := []byte{5, byte(rep), 0, 1, 0, 0, 0, 0, 0, 0}; !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%v: wrote %v, want %v", rep, b.Bytes(), want)
		}
	}
}
