package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/internal/loopback"
)

// loopbackSSHD is a minimal in-process SSH server on 127.0.0.1 that accepts
// any client: enough to reach the host key check. It returns its port.
func loopbackSSHD(t *testing.T, key ssh.Signer) int {
	t.Helper()
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(key)
	addr := loopback.Serve(t, func(c net.Conn) {
		sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			return
		}
		defer sc.Close()
		go ssh.DiscardRequests(reqs)
		for ch := range chans {
			_ = ch.Reject(ssh.Prohibited, "no")
		}
	})
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return n
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// refusingPrompts answers Cancel to every host key question.
type refusingPrompts struct{}

func (refusingPrompts) HostKey(context.Context, string, string, string) (bool, error) {
	return false, nil
}

func (refusingPrompts) Secret(context.Context, string, bool) (string, error) {
	return "", errcat.User.New("cancelled by the user")
}

// Each way Open fails carries its category; none needs a network beyond
// loopback.
func TestOpenErrorCategories(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("HOME", t.TempDir()) // no default identity files, no ~/.ssh/config
	dir := t.TempDir()

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	hostKey := newSigner(t)
	port := loopbackSSHD(t, hostKey)
	clientKey := newSigner(t)

	changedKnownHosts := filepath.Join(dir, "known_hosts_changed")
	line := knownhosts.Line([]string{knownhosts.Normalize("127.0.0.1:" + strconv.Itoa(port))}, newSigner(t).PublicKey())
	if err := os.WriteFile(changedKnownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notAKey := filepath.Join(dir, "not_a_key")
	if err := os.WriteFile(notAKey, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func() Config {
		return Config{Host: "127.0.0.1", Port: port, User: "dev", Signers: []ssh.Signer{clientKey},
			KnownHostsFile: filepath.Join(dir, "known_hosts_empty"), SSHConfigFile: "none", Agent: AgentOff,
			ConnectTimeout: 5 * time.Second, PoolSize: 1}
	}
	cases := []struct {
		name string
		cfg  func(*Config)
		is   error
		want errcat.Category
	}{
		{"closed port", func(c *Config) { c.Port = closedPort }, nil, errcat.Environment},
		{"no host", func(c *Config) { c.Host = "" }, nil, errcat.Config},
		{"ssh config missing", func(c *Config) { c.SSHConfigFile = filepath.Join(dir, "nope") }, nil, errcat.Config},
		{"bad strictHostKeyChecking", func(c *Config) { c.StrictHostKeyChecking = "maybe" }, nil, errcat.Config},
		{"bad ProxyJump", func(c *Config) { c.ProxyJump = "dev@[::1" }, nil, errcat.Config},
		{"identity file is not a key", func(c *Config) { c.Signers = nil; c.IdentityFiles = []string{notAKey} }, nil, errcat.Config},
		{"nothing to authenticate with", func(c *Config) { c.Signers = nil; c.IdentityFiles = []string{filepath.Join(dir, "id_nope")} }, ErrAuth, errcat.Config},
		{"ssh-agent required, none running", func(c *Config) { c.Agent = AgentOn }, nil, errcat.Environment},
		{"unknown host key, no prompts", nil, ErrHostKeyUnknown, errcat.Config},
		{"unknown host key, cancelled", func(c *Config) { c.Prompts = refusingPrompts{} }, ErrHostKeyUnknown, errcat.Config},
		{"changed host key", func(c *Config) { c.KnownHostsFile = changedKnownHosts }, ErrHostKeyChanged, errcat.Environment},
		{"broken known_hosts", func(c *Config) { c.KnownHostsFile = notAKey }, nil, errcat.Config},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tun, err := Open(ctx, cfg)
			if err == nil {
				tun.Close()
				t.Fatal("Open succeeded")
			}
			t.Logf("%v", err)
			if got := errcat.Of(err); got != c.want {
				t.Errorf("category %q, want %q: %v", got, c.want, err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("%v does not match %v", err, c.is)
			}
		})
	}

	// Accepted: the tunnel opens; dial errors are environment errors.
	cfg := base()
	cfg.StrictHostKeyChecking = StrictAcceptNew
	cfg.KnownHostsFile = filepath.Join(dir, "known_hosts_new")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tun, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	if _, err := tun.Dial(ctx, "tcp", "10.0.0.1:80"); errcat.Of(err) != errcat.Environment {
		t.Errorf("refused channel: category %q, want environment: %v", errcat.Of(err), err)
	}
	if _, err := tun.Dial(ctx, "tcp", "10.0.0.1:http-alt"); errcat.Of(err) != errcat.User {
		t.Errorf("bad port: category %q, want user: %v", errcat.Of(err), err)
	}
	tun.Close()
	if _, err := tun.Dial(ctx, "tcp", "10.0.0.1:80"); errcat.Of(err) != errcat.Environment || !errors.Is(err, ErrClosed) {
		t.Errorf("closed tunnel: category %q, want environment: %v", errcat.Of(err), err)
	}
}
