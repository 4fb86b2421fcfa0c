package channel

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/tether-dev/tether/internal/socks5"
)

// FuzzSOCKSAuth drives the listener's handshake with arbitrary bytes: no
// panic, and success only with the right credentials.
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
		err := socks5.ServerAuth(rw, make([]byte, socks5.BufSize), socksAuth(user, pass, nil))
		if err == nil && !bytes.Contains(data, pass) {
			t.Fatalf("authenticated without the password: %q", data)
		}
	})
}

// TestSOCKSAuthPolicy: the session's credentials, or, for a trusted peer,
// no credentials or an empty password; never wrong ones.
func TestSOCKSAuthPolicy(t *testing.T) {
	user, pass := []byte("tether-0123abcd"), []byte("secret")
	trusted := func() bool { return true }
	tests := []struct {
		name       string
		user, pass string
		trusted    func() bool
		want       bool
	}{
		{"right", "tether-0123abcd", "secret", nil, true},
		{"wrong password", "tether-0123abcd", "nope", nil, false},
		{"wrong user", "bob", "secret", nil, false},
		{"empty password", "alice", "", nil, false},
		{"empty password, trusted", "alice", "", trusted, true},
		{"wrong password, trusted", "alice", "nope", trusted, false},
		{"empty password, not trusted", "alice", "", func() bool { return false }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := socksAuth(user, pass, tt.trusted).Check([]byte(tt.user), []byte(tt.pass)); got != tt.want {
				t.Errorf("Check = %v, want %v", got, tt.want)
			}
		})
	}
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
