package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/agent"
	"github.com/tether-dev/tether/internal/relay"
	"github.com/tether-dev/tether/internal/socks5"
	"github.com/tether-dev/tether/internal/syncbuf"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/workspace"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tether-agent-test")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "tether-agent")
	cmd := exec.Command("go", "build", "-o", binPath, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agentProc is a running tether-agent.
type agentProc struct {
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	lines  chan string // stdout
	waited chan error
}

func start(t *testing.T, args ...string) *agentProc {
	t.Helper()
	p := &agentProc{cmd: exec.Command(binPath, args...), stderr: &syncbuf.Buffer{}, lines: make(chan string, 10), waited: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.waited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		for range p.lines {
		}
	})
	return p
}

func (p *agentProc) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			err := <-p.waited
			p.waited <- err
			t.Fatalf("tether-agent exited (%v): %s", err, p.stderr)
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatal("no output from tether-agent")
	}
	return ""
}

// stop sends SIGINT and expects a clean exit.
func (p *agentProc) stop(t *testing.T) string {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	for range p.lines {
	}
	select {
	case err := <-p.waited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tether-agent did not stop on SIGINT")
	}
	return p.stderr.String()
}

var listeningRE = regexp.MustCompile(`^sandbox proxy machine listening on (127\.0\.0\.1:(\d+)) \(workspace (.+)\)$`)

func openTunnel(t *testing.T, dir string, port int) *sshplugin.Tunnel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := sshplugin.Open(ctx, sshplugin.Config{
		Host: "127.0.0.1", Port: port, User: "tether",
		IdentityFiles:         []string{filepath.Join(dir, ".tether-sandbox", "id_ed25519")},
		KnownHostsFile:        filepath.Join(dir, ".tether-sandbox", "known_hosts"),
		StrictHostKeyChecking: "yes",
		SSHConfigFile:         "none",
		Agent:                 sshplugin.AgentOff,
		PoolSize:              1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })
	return tun
}

func getOrders(t *testing.T, tun *sshplugin.Tunnel) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tun.Dial(ctx, "tcp", "orders.sandbox.internal:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: orders.sandbox.internal\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(resp), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") {
		t.Fatalf("response: %q", resp)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %q", err, body)
	}
	return got
}

func TestSandboxCommand(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "sandbox", "--workspace", dir)
	m := listeningRE.FindStringSubmatch(p.line(t))
	if m == nil || m[3] != dir {
		t.Fatalf("unexpected first line (stderr %s)", p.stderr)
	}
	port, _ := strconv.Atoi(m[2])

	for _, f := range []string{"host_key", "id_ed25519", "known_hosts"} {
		fi, err := os.Stat(filepath.Join(dir, ".tether-sandbox", f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "tether.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := workspace.Parse("tether.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Problems) > 0 {
		t.Fatalf("tether.yaml has problems: %v\n%s", snap.Problems, data)
	}
	px, ok := snap.File.Proxy("sandbox")
	if !ok || px.SSH == nil || px.SSH.Host != "127.0.0.1" || px.SSH.Port != port || px.SSH.User != "tether" ||
		px.SSH.StrictHostKeyChecking != "yes" || px.Routes == nil ||
		strings.Join(px.Routes.CIDRs, ",") != "10.99.0.0/24" || strings.Join(px.Routes.Domains, ",") != "sandbox.internal" {
		t.Fatalf("proxy: %+v\n%s", px, data)
	}
	rc, ok := snap.File.Config("sample")
	if !ok || rc.Type != "java" || rc.Java == nil || rc.Java.MainClass != "Sample" ||
		strings.Join(rc.Java.Classpath, ",") != filepath.Join(dir, ".tether-sandbox", "classes") ||
		rc.Interconnect == nil || !rc.Interconnect.Enabled || rc.Interconnect.Proxy != "sandbox" {
		t.Fatalf("configuration: %+v\n%s", rc, data)
	}

	// The written files are what the SSH plugin needs.
	tun := openTunnel(t, dir, port)
	if got := getOrders(t, tun); got["service"] != "orders" || got["message"] != "hello from the private network" {
		t.Fatalf("orders: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := tun.Dial(ctx, "tcp", "db.sandbox.internal:5432")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(db, "ping\n")
	if l, err := bufio.NewReader(db).ReadString('\n'); l != "ping\n" {
		t.Fatalf("echo: %q %v", l, err)
	}
	db.Close()
	if _, err := tun.Dial(ctx, "tcp", "example.com:80"); err == nil || tunnel.ReasonOf(err) == tunnel.TunnelDown {
		t.Fatalf("outside the sandbox: %v", err)
	}
	if _, err := tun.Dial(ctx, "tcp", "nope.sandbox.internal:80"); tunnel.ReasonOf(err) != tunnel.NoSuchHost {
		t.Fatalf("unknown name: %v", err)
	}
	tun.Close()
	p.stop(t)

	// A restart keeps the port, so tether.yaml stays valid.
	p = start(t, "sandbox", "--workspace", dir)
	m2 := listeningRE.FindStringSubmatch(p.line(t))
	if m2 == nil || m2[2] != m[2] {
		t.Fatalf("restart: %q, want port %s", m2, m[2])
	}
	p.stop(t)
	if data2, _ := os.ReadFile(filepath.Join(dir, "tether.yaml")); !bytes.Equal(data, data2) {
		t.Fatal("tether.yaml changed on restart")
	}

	// A fixed other port: the generated file follows; a user's file is left alone.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	fixed := ln.Addr().String()
	ln.Close()
	p = start(t, "sandbox", "--workspace", dir, "--listen", fixed)
	if l := p.line(t); !strings.Contains(l, " "+fixed+" ") {
		t.Fatalf("fixed port: %q", l)
	}
	p.stop(t)
	data3, _ := os.ReadFile(filepath.Join(dir, "tether.yaml"))
	if !strings.Contains(string(data3), "port: "+fixed[strings.LastIndex(fixed, ":")+1:]+"\n") {
		t.Fatalf("generated tether.yaml not updated:\n%s", data3)
	}
	user := "version: 1\n# mine\n"
	os.WriteFile(filepath.Join(dir, "tether.yaml"), []byte(user), 0o644)
	p = start(t, "sandbox", "--workspace", dir)
	p.line(t)
	stderr := p.stop(t)
	if data4, _ := os.ReadFile(filepath.Join(dir, "tether.yaml")); string(data4) != user {
		t.Fatalf("a user's tether.yaml was changed:\n%s", data4)
	}
	if !strings.Contains(stderr, "exists and was not changed") || !strings.Contains(stderr, "- name: sandbox") {
		t.Fatalf("no hint about what to add:\n%s", stderr)
	}
}

func TestSSHCommand(t *testing.T) {
	dir := t.TempDir()
	client, pemData, err := agent.NewKey("c")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id")
	os.WriteFile(keyFile, pemData, 0o600)
	auth := filepath.Join(dir, "authorized_keys")
	os.WriteFile(auth, ssh.MarshalAuthorizedKey(client.PublicKey()), 0o600)
	hostKey, hostPEM, _ := agent.NewKey("h")
	hostFile := filepath.Join(dir, "host_key")
	os.WriteFile(hostFile, hostPEM, 0o600)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()

	p := start(t, "ssh", "--listen", addr, "--authorized-keys", auth, "--host-key", hostFile, "--idle-exit", "1s")
	var c *ssh.Client
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err = ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "u", Auth: []ssh.AuthMethod{ssh.PublicKeys(client)},
			HostKeyCallback: ssh.FixedHostKey(hostKey.PublicKey())})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	// Reach a loopback port through the agent.
	echo, _ := net.Listen("tcp", "127.0.0.1:0")
	defer echo.Close()
	go func() {
		if c, err := echo.Accept(); err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	conn, err := c.Dial("tcp", echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "x")
	b := make([]byte, 1)
	if _, err := io.ReadFull(conn, b); err != nil || b[0] != 'x' {
		t.Fatal(err)
	}
	c.Close()
	// The idle exit ends the process cleanly.
	select {
	case err := <-p.waited:
		for range p.lines {
		}
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no idle exit")
	}
	for range p.lines {
	}
	if !strings.Contains(p.stderr.String(), ssh.FingerprintSHA256(hostKey.PublicKey())) {
		t.Fatalf("host key fingerprint not printed:\n%s", p.stderr)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--help"}, 0, "tether-agent sandbox"},
		{nil, 2, ""},
		{[]string{"ssh", "--help"}, 0, "--authorized-keys FILE"},
		{[]string{"sandbox", "--help"}, 0, "--workspace DIR"},
		{[]string{"ssh"}, 2, ""},
		{[]string{"ssh", "--bogus"}, 2, ""},
		{[]string{"sandbox", "extra"}, 2, ""},
		{[]string{"nope"}, 2, ""},
		{[]string{"version"}, 0, "tether-agent "},
	} {
		var out, errOut bytes.Buffer
		if code := run(tc.args, &out, &errOut); code != tc.code || !strings.Contains(out.String(), tc.out) {
			t.Errorf("%v: code %d, stdout %q, stderr %q", tc.args, code, out.String(), errOut.String())
		}
	}
}

// TestSampleApp compiles examples/sample-app/Sample.java and runs it through
// a SOCKS5 proxy into the sandbox (what `tether launch` does with the
// interconnect on). Skipped without a JDK.
func TestSampleApp(t *testing.T) {
	javac, err := exec.LookPath("javac")
	if err != nil {
		t.Skip("no javac")
	}
	java, err := exec.LookPath("java")
	if err != nil {
		t.Skip("no java")
	}
	dir := t.TempDir()
	classes := filepath.Join(dir, "classes")
	if out, err := exec.Command(javac, "-d", classes, "../../examples/sample-app/Sample.java").CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	p := start(t, "sandbox", "--workspace", dir)
	m := listeningRE.FindStringSubmatch(p.line(t))
	if m == nil {
		t.Fatal("no listening line")
	}
	port, _ := strconv.Atoi(m[2])
	tun := openTunnel(t, dir, port)
	socks := socksProxy(t, tun.Dial)
	cmd := exec.Command(java, "-DsocksProxyHost=127.0.0.1", "-DsocksProxyPort="+strconv.Itoa(socks),
		"-cp", classes, "Sample")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Sample: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "hello from the private network") || !strings.Contains(string(out), "OK:") {
		t.Fatalf("Sample output:\n%s", out)
	}
	tun.Close()
	p.stop(t)
}

// socksProxy serves a minimal SOCKS5 proxy (no auth, CONNECT) on loopback
// that dials through dial, and returns its port.
func socksProxy(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error)) int {
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
				c.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(c)
				rw := struct {
					io.Reader
					io.Writer
				}{br, c}
				buf := make([]byte, socks5.BufSize)
				if socks5.ServerAuth(rw, buf, socks5.Auth{NoAuth: func() bool { return true }}) != nil {
					return
				}
				_, target, err := socks5.ReadRequest(br, buf)
				if err != nil {
					return
				}
				up, err := dial(context.Background(), "tcp", target)
				if err != nil {
					socks5.WriteReply(c, socks5.ConnectionRefused)
					return
				}
				socks5.WriteReply(c, socks5.Succeeded)
				c.SetDeadline(time.Time{})
				pre, _ := br.Peek(br.Buffered())
				relay.Conns(c, up, relay.Prefix(pre))
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}
