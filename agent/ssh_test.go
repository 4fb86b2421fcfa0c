package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/tunnel"
)

func newSigner(t *testing.T) (ssh.Signer, []byte) {
	t.Helper()
	s, pemData, err := NewKey("test")
	if err != nil {
		t.Fatal(err)
	}
	return s, pemData
}

type testServer struct {
	addr    string
	hostKey ssh.Signer
	client  ssh.Signer
	pem     []byte // client private key
	cancel  context.CancelFunc
	done    chan error
}

// startServer runs ServeSSH on 127.0.0.1:0; cleanup stops it and checks that
// it returned and left no goroutine behind.
func startServer(t *testing.T, cfg SSHServerConfig) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), done: make(chan error, 1)}
	ts.hostKey, _ = newSigner(t)
	ts.client, ts.pem = newSigner(t)
	cfg.HostKey = ts.hostKey
	cfg.AuthorizedKeys = append(cfg.AuthorizedKeys, ts.client.PublicKey())
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- ServeSSH(ctx, ln, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ts.done:
			if err != nil && !errors.Is(err, ErrIdleExit) {
				t.Errorf("ServeSSH: %v", err)
			}
			ts.done <- err
		case <-time.After(10 * time.Second):
			t.Fatal("ServeSSH did not return")
		}
		checkNoLeaks(t)
	})
	return ts
}

var agentFrame = regexp.MustCompile(`/agent/(ssh|pipe|sandbox|errors|keys|data)\.go:`)

// checkNoLeaks fails if a goroutine is still running code of this package.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	var last string
	for i := 0; i < 100; i++ {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		last = ""
		for _, g := range strings.Split(string(buf), "\n\n") {
			if agentFrame.MatchString(g) && !strings.Contains(g, "checkNoLeaks") {
				last += g + "\n\n"
			}
		}
		if last == "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("leaked goroutines:\n%s", last)
}

func (ts *testServer) dial(t *testing.T, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	t.Helper()
	if len(auth) == 0 {
		auth = []ssh.AuthMethod{ssh.PublicKeys(ts.client)}
	}
	return ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{
		User:            "tether",
		Auth:            auth,
		HostKeyCallback: ssh.FixedHostKey(ts.hostKey.PublicKey()),
		Timeout:         5 * time.Second,
	})
}

func (ts *testServer) mustDial(t *testing.T) *ssh.Client {
	t.Helper()
	c, err := ts.dial(t)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoServer listens on loopback and echoes every connection until EOF.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			})
		}
	})
	return ln.Addr().String()
}

// roundTrip writes n random bytes, half-closes and checks that the same
// bytes come back followed by EOF.
func roundTrip(t *testing.T, c net.Conn, n int) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo: got %d bytes, want %d (equal prefix: %v)", len(got), len(data), bytes.HasPrefix(data, got))
	}
}

func openChannelError(t *testing.T, err error) *ssh.OpenChannelError {
	t.Helper()
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) {
		t.Fatalf("want *ssh.OpenChannelError, got %T %v", err, err)
	}
	return oce
}

func TestDirectTCPIPEcho(t *testing.T) {
	ts := startServer(t, SSHServerConfig{})
	echo := echoServer(t)
	c := ts.mustDial(t)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			conn, err := c.Dial("tcp", echo)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			roundTrip(t, conn, 3<<20+i)
		})
	}
	wg.Wait()
}

func TestDirectTCPIPRefused(t *testing.T) {
	ts := startServer(t, SSHServerConfig{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c := ts.mustDial(t)
	_, err := c.Dial("tcp", addr)
	oce := openChannelError(t, err)
	if oce.Reason != ssh.ConnectionFailed || oce.Message != "Connection refused" {
		t.Fatalf("got %v %q", oce.Reason, oce.Message)
	}
}

func TestDirectTCPIPUnknownName(t *testing.T) {
	ts := startServer(t, SSHServerConfig{})
	c := ts.mustDial(t)
	_, err := c.Dial("tcp", "no-such-host.invalid:80")
	oce := openChannelError(t, err)
	if oce.Reason != ssh.ConnectionFailed {
		t.Fatalf("reason %v", oce.Reason)
	}
	// Without a working DNS server the resolver fails temporarily instead.
	if oce.Message != "Name or service not known" && oce.Message != "Temporary failure in name resolution" {
		t.Fatalf("message %q", oce.Message)
	}
}

func TestRejectionMessages(t *testing.T) {
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{opErr(syscall.ECONNREFUSED), "Connection refused"},
		{opErr(syscall.EHOSTUNREACH), "No route to host"},
		{opErr(syscall.ENETUNREACH), "Network is unreachable"},
		{opErr(syscall.ETIMEDOUT), "Connection timed out"},
		{context.DeadlineExceeded, "Connection timed out"},
		{&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}}, "Name or service not known"},
		{&net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}, "Temporary failure in name resolution"},
		{&RejectError{Reason: ssh.Prohibited, Message: "nope"}, "nope"},
		{errors.New("boom"), "connect failed: boom"},
	} {
		if _, got := rejection(tc.err); got != tc.want {
			t.Errorf("%v: got %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestDialErrorFromCustomDialer(t *testing.T) {
	ts := startServer(t, SSHServerConfig{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: addr, IsNotFound: true}}
	}})
	_, err := ts.mustDial(t).Dial("tcp", "svc.cluster.local:80")
	if oce := openChannelError(t, err); oce.Message != "Name or service not known" {
		t.Fatalf("message %q", oce.Message)
	}
}

func TestAuthRefused(t *testing.T) {
	ts := startServer(t, SSHServerConfig{})
	other, _ := newSigner(t)
	if c, err := ts.dial(t, ssh.PublicKeys(other)); err == nil {
		c.Close()
		t.Fatal("a wrong key was accepted")
	} else if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("unexpected error: %v", err)
	}
	if c, err := ts.dial(t, ssh.Password("secret"),
		ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return []string{"x"}, nil })); err == nil {
		c.Close()
		t.Fatal("password authentication was accepted")
	}
	// The right key still works afterwards.
	ts.mustDial(t)
}

func TestSessionRejected(t *testing.T) {
	ts := startServer(t, SSHServerConfig{})
	c := ts.mustDial(t)
	if _, err := c.NewSession(); err == nil {
		t.Fatal("session accepted")
	} else if oce := openChannelError(t, err); oce.Reason != ssh.Prohibited {
		t.Fatalf("reason %v", oce.Reason)
	}
	ok, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
	if err != nil || ok {
		t.Fatalf("keepalive: ok=%v err=%v, want a failure reply", ok, err)
	}
	ok, _, err = c.SendRequest("no-such-request@example.com", true, nil)
	if err != nil || ok {
		t.Fatalf("unknown request: ok=%v err=%v, want a failure reply", ok, err)
	}
}

func portOf(t *testing.T, a net.Addr) int {
	t.Helper()
	_, p, err := net.SplitHostPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// serveEcho echoes every connection accepted on ln (the client side of a
// remote forward).
func serveEcho(ln net.Listener) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
				c.(interface{ CloseWrite() error }).CloseWrite()
			})
		}
	})
	return &wg
}

func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTCPIPForward(t *testing.T) {
	ts := startServer(t, SSHServerConfig{})
	c := ts.mustDial(t)
	ln, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := portOf(t, ln.Addr())
	if port == 0 {
		t.Fatal("no bound port in the reply")
	}
	wg := serveEcho(ln)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i := 0; i < 3; i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, conn, 1<<20)
		conn.Close()
	}
	// Closing the client listener sends cancel-tcpip-forward.
	ln.Close()
	wg.Wait()
	waitRefused(t, addr)

	// Forwards die with their connection.
	ln2, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr2 := ln2.Addr().String()
	c.Close()
	waitRefused(t, addr2)
}

func TestCancelUnknownForward(t *testing.T) {
	ts := startServer(t, SSHServerConfig{})
	c := ts.mustDial(t)
	ok, _, err := c.SendRequest("cancel-tcpip-forward", true, ssh.Marshal(forwardRequest{"127.0.0.1", 1}))
	if err != nil || ok {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
}

func TestIdleExit(t *testing.T) {
	const idle = 300 * time.Millisecond
	ts := startServer(t, SSHServerConfig{IdleExit: idle})
	c := ts.mustDial(t)
	select {
	case err := <-ts.done:
		t.Fatalf("ServeSSH returned with a client connected: %v", err)
	case <-time.After(3 * idle):
	}
	start := time.Now()
	c.Close()
	select {
	case err := <-ts.done:
		if !errors.Is(err, ErrIdleExit) {
			t.Fatalf("got %v, want ErrIdleExit", err)
		}
		if d := time.Since(start); d < idle-50*time.Millisecond {
			t.Fatalf("exited %v after the last client left, want >= %v", d, idle)
		}
		ts.done <- err
	case <-time.After(30 * time.Second):
		t.Fatal("no idle exit")
	}
}

func TestIdleExitWithoutClient(t *testing.T) {
	ts := startServer(t, SSHServerConfig{IdleExit: 100 * time.Millisecond})
	select {
	case err := <-ts.done:
		if !errors.Is(err, ErrIdleExit) {
			t.Fatalf("got %v", err)
		}
		ts.done <- err
	case <-time.After(30 * time.Second):
		t.Fatal("no idle exit")
	}
}

func TestShutdownWithActiveStreams(t *testing.T) {
	ts := startServer(t, SSHServerConfig{})
	echo := echoServer(t)
	c := ts.mustDial(t)
	conn, err := c.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("hi"))
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ts.cancel()
	select {
	case err := <-ts.done:
		if err != nil {
			t.Fatal(err)
		}
		ts.done <- err
	case <-time.After(30 * time.Second):
		t.Fatal("ServeSSH did not return")
	}
	checkNoLeaks(t)
}

func TestClientAliveDisconnectsDeadClient(t *testing.T) {
	ts := startServer(t, SSHServerConfig{ClientAliveInterval: 50 * time.Millisecond})
	raw, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cc, chans, reqs, err := ssh.NewClientConn(raw, ts.addr, &ssh.ClientConfig{
		User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(ts.client)},
		HostKeyCallback: ssh.FixedHostKey(ts.hostKey.PublicKey()),
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for nc := range chans {
			nc.Reject(ssh.Prohibited, "")
		}
	}()
	// Never answer global requests: the server must give up on us.
	done := make(chan error, 1)
	go func() { done <- cc.Wait() }()
	go func() {
		for range reqs { // swallow keepalives without replying
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the server kept a client that does not answer keepalives")
	}
}

// writeClientFiles writes the client key and a known_hosts file for the
// plugin.
func writeClientFiles(t *testing.T, ts *testServer) (keyFile, knownHosts string) {
	t.Helper()
	dir := t.TempDir()
	keyFile = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, ts.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	knownHosts = filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(ts.addr)}, ts.hostKey.PublicKey())
	if err := os.WriteFile(knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile, knownHosts
}

func openPlugin(t *testing.T, ts *testServer) *sshplugin.Tunnel {
	t.Helper()
	keyFile, knownHosts := writeClientFiles(t, ts)
	host, portStr, _ := net.SplitHostPort(ts.addr)
	port, _ := strconv.Atoi(portStr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := sshplugin.Open(ctx, sshplugin.Config{
		Host: host, Port: port, User: "tether",
		IdentityFiles:         []string{keyFile},
		KnownHostsFile:        knownHosts,
		StrictHostKeyChecking: "yes",
		SSHConfigFile:         "none",
		Agent:                 sshplugin.AgentOff,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })
	return tun
}

func TestSSHPlugin(t *testing.T) {
	ts := startServer(t, SSHServerConfig{})
	echo := echoServer(t)
	tun := openPlugin(t, ts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, err := tun.Dial(ctx, "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn, 1<<20)
	conn.Close()

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	if _, err := tun.Dial(ctx, "tcp", closed); tunnel.ReasonOf(err) != tunnel.Refused {
		t.Fatalf("closed port: %v (reason %s)", err, tunnel.ReasonOf(err))
	}

	// Reverse: the agent listens, the laptop serves.
	rl, err := tun.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg := serveEcho(rl)
	rc, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(portOf(t, rl.Addr()))))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, rc, 64<<10)
	rc.Close()
	rl.Close()
	wg.Wait()
}

func TestSandbox(t *testing.T) {
	sb := NewSandbox()
	sb.Now = func() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) }
	ts := startServer(t, SSHServerConfig{Dial: sb.Dial, Listen: sb.Listen})
	t.Cleanup(func() { sb.Close() })
	tun := openPlugin(t, ts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, addr := range []string{"orders.sandbox.internal:80", "10.99.0.10:80", "ORDERS.sandbox.internal.:80"} {
		conn, err := tun.Dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		br := bufio.NewReader(conn)
		// Two requests on one connection, then Connection: close.
		for i, connHdr := range []string{"", "Connection: close\r\n"} {
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: orders.sandbox.internal\r\n"+connHdr+"\r\n")
			status, body := readHTTP(t, br)
			if status != "HTTP/1.1 200 OK" {
				t.Fatalf("%s request %d: status %q", addr, i, status)
			}
			var got map[string]string
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%s: %v: %s", addr, err, body)
			}
			if got["service"] != "orders" || got["message"] != "hello from the private network" || got["time"] != "2030-01-02T03:04:05Z" {
				t.Fatalf("%s: body %s", addr, body)
			}
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("%s: want EOF after Connection: close, got %v", addr, err)
		}
		conn.Close()
	}

	conn, err := tun.Dial(ctx, "tcp", "orders.sandbox.internal:80")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET /nope HTTP/1.0\r\n\r\n")
	if status, _ := readHTTP(t, bufio.NewReader(conn)); status != "HTTP/1.1 404 Not Found" {
		t.Fatalf("status %q", status)
	}
	conn.Close()

	for _, addr := range []string{"db.sandbox.internal:5432", "10.99.0.11:5432"} {
		conn, err := tun.Dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		roundTrip(t, conn, 200<<10)
		conn.Close()
	}

	ssh := ts.mustDial(t)
	for _, tc := range []struct {
		addr, msg string
		reason    tunnel.Reason
	}{
		{"nope.sandbox.internal:80", "Name or service not known", tunnel.NoSuchHost},
		{"sandbox.internal:80", "Name or service not known", tunnel.NoSuchHost},
		{"10.99.0.99:80", "No route to host", tunnel.Unreachable},
		{"orders.sandbox.internal:81", "Connection refused", tunnel.Refused},
		{"10.99.0.11:80", "Connection refused", tunnel.Refused},
		{"8.8.8.8:53", "administratively prohibited", tunnel.Other},
		{"example.com:443", "administratively prohibited", tunnel.Other},
		{"127.0.0.1:" + strconv.Itoa(portOf(t, mustAddr(t, ts.addr))), "administratively prohibited", tunnel.Other},
	} {
		_, err := ssh.Dial("tcp", tc.addr)
		oce := openChannelError(t, err)
		if !strings.HasPrefix(oce.Message, tc.msg) {
			t.Errorf("%s: message %q, want %q", tc.addr, oce.Message, tc.msg)
		}
		if _, err := tun.Dial(ctx, "tcp", tc.addr); tunnel.ReasonOf(err) != tc.reason {
			t.Errorf("%s via plugin: %v, reason %s, want %s", tc.addr, err, tunnel.ReasonOf(err), tc.reason)
		}
	}

	// Reverse forwards stay on loopback.
	rl, err := ssh.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	wg := serveEcho(rl)
	rc, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(portOf(t, rl.Addr()))))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, rc, 1000)
	rc.Close()
	rl.Close()
	wg.Wait()
	if _, err := sb.Listen("tcp", "192.0.2.1:0"); err == nil {
		t.Fatal("sandbox listened on a non-loopback address")
	}
}

func mustAddr(t *testing.T, s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func readHTTP(t *testing.T, br *bufio.Reader) (status string, body []byte) {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("status line: %v", err)
	}
	n := -1
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("headers: %v", err)
		}
		h = strings.TrimSpace(h)
		if h == "" {
			break
		}
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "Content-Length") {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if n < 0 {
		t.Fatal("no Content-Length")
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatalf("body: %v", err)
	}
	return strings.TrimSpace(line), body
}

func TestMemPipe(t *testing.T) {
	a, b := memPipe(&net.TCPAddr{}, &net.TCPAddr{})
	// Write more than the buffer while the other side echoes.
	go func() { io.Copy(b, b); b.CloseWrite() }()
	roundTrip(t, a, 1<<20)
	// Deadlines.
	a2, b2 := memPipe(&net.TCPAddr{}, &net.TCPAddr{})
	a2.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := a2.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read deadline: %v", err)
	}
	a2.SetReadDeadline(time.Time{})
	go b2.Write([]byte("x"))
	if n, err := a2.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("read after clearing the deadline: %d %v", n, err)
	}
	b2.Close()
	if _, err := a2.Write([]byte("y")); err == nil {
		t.Fatal("write to a closed peer succeeded")
	}
	if _, err := a2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read from a closed peer: %v", err)
	}
}

func TestParseAuthorizedKeys(t *testing.T) {
	s1, _ := newSigner(t)
	s2, _ := newSigner(t)
	data := "# comment\n\n" + string(ssh.MarshalAuthorizedKey(s1.PublicKey())) +
		`from="10.0.0.0/8" ` + string(ssh.MarshalAuthorizedKey(s2.PublicKey()))
	keys, err := ParseAuthorizedKeys([]byte(data))
	if err != nil || len(keys) != 2 {
		t.Fatalf("%d keys, %v", len(keys), err)
	}
	if _, err := ParseAuthorizedKeys([]byte("# nothing\n")); err == nil {
		t.Fatal("empty file accepted")
	}
	if _, err := ParseAuthorizedKeys([]byte("ssh-ed25519 garbage\n")); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "key")
	s1, created, err := LoadOrCreateKey(p, "c")
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	s2, created, err := LoadOrCreateKey(p, "c")
	if err != nil || created || !bytes.Equal(s1.PublicKey().Marshal(), s2.PublicKey().Marshal()) {
		t.Fatal("key not reloaded", created, err)
	}
	pub, _ := os.ReadFile(p + ".pub")
	if k, _, _, _, err := ssh.ParseAuthorizedKey(pub); err != nil || !bytes.Equal(k.Marshal(), s1.PublicKey().Marshal()) {
		t.Fatal(".pub mismatch", err)
	}
}

// BenchmarkDirectTCPIP measures one stream's throughput client -> agent ->
// loopback sink.
func BenchmarkDirectTCPIP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	sl, _ := net.Listen("tcp", "127.0.0.1:0")
	hostKey, _, _ := NewKey("")
	client, _, _ := NewKey("")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeSSH(ctx, sl, SSHServerConfig{HostKey: hostKey, AuthorizedKeys: []ssh.PublicKey{client.PublicKey()}})
	}()
	defer func() { cancel(); <-done }()
	c, err := ssh.Dial("tcp", sl.Addr().String(), &ssh.ClientConfig{User: "b", Auth: []ssh.AuthMethod{ssh.PublicKeys(client)},
		HostKeyCallback: ssh.FixedHostKey(hostKey.PublicKey()), Config: ssh.Config{Ciphers: Ciphers}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	conn, err := c.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}
