package ssh

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/internal/fakecloud"
	"github.com/tether-dev/tether/tunnel"
)

func baseConfig(c *fakecloud.Cloud) Config {
	host, _, _ := net.SplitHostPort(c.SSHAddr)
	return Config{
		Host:           host,
		Port:           22,
		User:           c.User,
		IdentityFiles:  []string{c.IdentityFile},
		KnownHostsFile: c.KnownHostsFile,
		SSHConfigFile:  "none",
		Agent:          AgentOff,
	}
}

func open(t *testing.T, cfg Config) *Tunnel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tun, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { tun.Close() })
	return tun
}

func httpGet(t *testing.T, tun *Tunnel, url string) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: tun.Dial, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}

func TestDialHTTP(t *testing.T) {
	c := fakecloud.Start(t)
	tun := open(t, baseConfig(c))
	if s := tun.State(); s != tunnel.Connected {
		t.Fatalf("state %s, want connected", s)
	}
	if got := httpGet(t, tun, "http://"+c.HTTPAddr+"/"); got != c.HTTPBody {
		t.Errorf("by IP: %q, want %q", got, c.HTTPBody)
	}
	// By private name: resolved by the bastion through the vpc's DNS.
	if got := httpGet(t, tun, "http://"+c.DBName+"/"); got != c.HTTPBody {
		t.Errorf("by name: %q, want %q", got, c.HTTPBody)
	}
}

func TestDialErrors(t *testing.T) {
	c := fakecloud.Start(t)
	tun := open(t, baseConfig(c))
	noHost := strings.TrimSuffix(c.ServiceIP, ".2") + ".77:80" // in the vpc range, nobody there
	tests := []struct {
		addr    string
		reason  tunnel.Reason
		message string
		sshd    string // what OpenSSH 9.2 sshd puts in the open-failure message (reason is always "connect failed")
	}{
		{c.ClosedAddr, tunnel.Refused, c.ClosedAddr + " refused by the proxy machine", "Connection refused"},
		{"nosuch." + fakecloud.Zone + ":80", tunnel.NoSuchHost, "nosuch." + fakecloud.Zone + ": no such host on the proxy machine", "Name or service not known"},
		// dnsmasq without upstreams answers REFUSED for other zones: EAI_AGAIN.
		{"nosuch.invalid:80", tunnel.NoSuchHost, "no such host", "Temporary failure in name resolution"},
		{noHost, tunnel.Unreachable, "unreachable from the proxy machine", "No route to host"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conn, err := tun.Dial(ctx, "tcp", tt.addr)
			if err == nil {
				conn.Close()
				t.Fatal("dial succeeded")
			}
			t.Logf("error: %v (sshd said %q)", err, errors.Unwrap(err))
			var de *tunnel.DialError
			if !errors.As(err, &de) {
				t.Fatalf("error %T, want *tunnel.DialError", err)
			}
			if de.Reason != tt.reason {
				t.Errorf("reason %s, want %s (%v)", de.Reason, tt.reason, err)
			}
			if de.Err == nil || de.Err.Error() != tt.sshd {
				t.Errorf("sshd message %v, want %q", de.Err, tt.sshd)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("message %q, want it to contain %q", err, tt.message)
			}
			if c := errcat.Of(err); c != errcat.Environment {
				t.Errorf("category %q, want environment", c)
			}
		})
	}
}

type prompts struct {
	mu     sync.Mutex
	calls  []string
	accept bool
}

func (p *prompts) HostKey(ctx context.Context, host, fingerprint, keyType string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, host+" "+keyType+" "+fingerprint)
	return p.accept, nil
}

func (p *prompts) Secret(ctx context.Context, prompt string, echo bool) (string, error) {
	return "", errors.New("no secrets here")
}

func TestHostKeyUnknown(t *testing.T) {
	c := fakecloud.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	fp := fakecloud.FingerprintSHA256(c.HostPublicKey)

	cfg := baseConfig(c)
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	if _, err := Open(ctx, cfg); !errors.Is(err, ErrHostKeyUnknown) {
		t.Fatalf("no prompts: %v, want ErrHostKeyUnknown", err)
	} else if !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), "accept-new") {
		t.Errorf("message %q should name the fingerprint and the way out", err)
	}

	p := &prompts{accept: false}
	cfg.Prompts = p
	if _, err := Open(ctx, cfg); !errors.Is(err, ErrHostKeyUnknown) || errcat.Of(err) != errcat.Config {
		t.Fatalf("refused by prompt: %v (%s), want ErrHostKeyUnknown (config)", err, errcat.Of(err))
	}
	if len(p.calls) != 1 || !strings.Contains(p.calls[0], fp) || !strings.Contains(p.calls[0], "ssh-ed25519") {
		t.Fatalf("prompt calls %q, want one naming %s", p.calls, fp)
	}
	if _, err := os.Stat(cfg.KnownHostsFile); err == nil {
		t.Error("known_hosts written although the key was refused")
	}

	p.accept = true
	tun := open(t, cfg)
	tun.Close()
	b, _ := os.ReadFile(cfg.KnownHostsFile)
	if !strings.Contains(string(b), c.HostPublicKey.Type()) {
		t.Errorf("known_hosts after accepted prompt = %q", b)
	}

	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	cfg.Prompts = nil
	cfg.StrictHostKeyChecking = StrictAcceptNew
	tun = open(t, cfg)
	tun.Close()
	b, _ = os.ReadFile(cfg.KnownHostsFile)
	if !strings.Contains(string(b), c.HostPublicKey.Type()) {
		t.Fatalf("known_hosts after accept-new = %q", b)
	}
	// Now known: strict checking passes.
	cfg.StrictHostKeyChecking = StrictYes
	open(t, cfg).Close()
}

func TestHostKeyChanged(t *testing.T) {
	c := fakecloud.Start(t)
	if err := c.RotateHostKey(); err != nil {
		t.Fatal(err)
	}
	for _, strict := range []string{StrictYes, StrictAcceptNew} {
		cfg := baseConfig(c)
		cfg.StrictHostKeyChecking = strict
		p := &prompts{accept: true}
		cfg.Prompts = p
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, err := Open(ctx, cfg)
		cancel()
		if !errors.Is(err, ErrHostKeyChanged) || errcat.Of(err) != errcat.Environment {
			t.Fatalf("%s: %v (%s), want ErrHostKeyChanged (environment)", strict, err, errcat.Of(err))
		}
		if !strings.Contains(err.Error(), "ssh-keygen -R") || !strings.Contains(err.Error(), "CHANGED") {
			t.Errorf("message %q should say what to do", err)
		}
		if len(p.calls) != 0 {
			t.Errorf("prompted for a changed key: %q", p.calls)
		}
	}
}

func TestProxyJump(t *testing.T) {
	c := fakecloud.Start(t)
	cfg := baseConfig(c)
	cfg.ProxyJump = c.User + "@" + c.SSHAddr + "," + c.User + "@" + c.SSHAddr
	cfg.PoolSize = 1
	tun := open(t, cfg)
	if got := httpGet(t, tun, "http://"+c.HTTPAddr+"/"); got != c.HTTPBody {
		t.Errorf("through jump chain: %q", got)
	}
}

func TestListen(t *testing.T) {
	c := fakecloud.Start(t)
	tun := open(t, baseConfig(c))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := tun.Listen(ctx, "tcp", c.BastionVPCIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(conn, "hello from laptop\n")
		conn.Close()
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	conn, err := c.DialFromVPC(ctx, net.JoinHostPort(c.BastionVPCIP, port))
	if err != nil {
		t.Fatalf("dial reverse forward from vpc: %v", err)
	}
	defer conn.Close()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if line != "hello from laptop\n" {
		t.Errorf("read %q, %v", line, err)
	}
}

// countFDs counts open sockets: the fake cloud's sshd restart changes the
// pidfds and pipes of the test process, which are not ours.
func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// settle waits until cond holds or the deadline passes.
func settle(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func TestReconnect(t *testing.T) {
	c := fakecloud.Start(t)
	runtime.GC()
	goroutines, fds := runtime.NumGoroutine(), countFDs(t)

	tun, err := Open(context.Background(), baseConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan tunnel.Event, 100)
	stop := tun.Watch(func(e tunnel.Event) { events <- e })
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inflight, err := tun.Dial(ctx, "tcp", c.EchoAddr)
	if err != nil {
		t.Fatal(err)
	}

	c.StopSSHD()
	start := time.Now()
	waitState(t, events, tunnel.Reconnecting, 30*time.Second)
	t.Logf("reconnecting after %v", time.Since(start))

	// The stream in flight fails, it does not hang.
	inflight.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := inflight.Read(make([]byte, 1)); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("in-flight read: %v, want ErrConnectionLost", err)
	}
	inflight.Close()

	// New dials wait, bounded by their context.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = tun.Dial(short, "tcp", c.EchoAddr)
	cancelShort()
	if tunnel.ReasonOf(err) != tunnel.TunnelDown {
		t.Errorf("dial while down: %v, want tunnel-down", err)
	}

	// A dial started while down completes after the restart.
	dialed := make(chan error, 1)
	go func() {
		conn, err := tun.Dial(ctx, "tcp", c.EchoAddr)
		if err == nil {
			conn.Close()
		}
		dialed <- err
	}()
	time.Sleep(500 * time.Millisecond)
	if err := c.StartSSHD(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitState(t, events, tunnel.Connected, 30*time.Second)
	t.Logf("connected %v after restart", time.Since(start))
	if err := <-dialed; err != nil {
		t.Errorf("dial waiting for reconnect: %v", err)
	}
	echo(t, tun, c.EchoAddr)

	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	waitState(t, events, tunnel.Closed, 10*time.Second)
	if _, err := tun.Dial(ctx, "tcp", c.EchoAddr); tunnel.ReasonOf(err) != tunnel.TunnelDown {
		t.Errorf("dial after Close: %v", err)
	}
	if !settle(30*time.Second, func() bool { return runtime.NumGoroutine() <= goroutines+2 }) {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after Close\n%s", goroutines, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
	if !settle(30*time.Second, func() bool { return countFDs(t) <= fds }) {
		ents, _ := os.ReadDir("/proc/self/fd")
		var links []string
		for _, e := range ents {
			l, _ := os.Readlink("/proc/self/fd/" + e.Name())
			links = append(links, e.Name()+"="+l)
		}
		t.Errorf("fds: %d before, %d after Close: %v", fds, countFDs(t), links)
	}
}

func waitState(t *testing.T, events <-chan tunnel.Event, want tunnel.State, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e := <-events:
			t.Logf("event %s %v", e.State, e.Err)
			if e.State == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event within %v", want, d)
		}
	}
}

func echo(t *testing.T, tun *Tunnel, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := tun.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
}

func TestConcurrentDials(t *testing.T) {
	c := fakecloud.Start(t)
	tun := open(t, baseConfig(c))
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := tun.Dial(ctx, "tcp", c.EchoAddr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			msg := fmt.Sprintf("hello %d", i)
			if _, err := io.WriteString(conn, msg); err != nil {
				errs <- err
				return
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
				errs <- fmt.Errorf("echo %q, %v", buf, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed < 5 {
			t.Error(err)
		}
		failed++
	}
	t.Logf("%d dials in %v, %d failed", n, time.Since(start), failed)
}

func TestLargeTransfer(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GB transfer; not with -short")
	}
	c := fakecloud.Start(t)
	tun := open(t, baseConfig(c))
	const n = 1 << 30
	want := sha256.New()
	io.Copy(want, fakecloud.PseudoRandom(n))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := tun.Dial(ctx, "tcp", c.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "GET /bytes?n=%d HTTP/1.0\r\nHost: x\r\n\r\n", n)
	br := bufio.NewReaderSize(conn, 256<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	m, err := io.Copy(got, resp.Body)
	if err != nil || m != n {
		t.Fatalf("read %d bytes, %v; want %d", m, err, n)
	}
	d := time.Since(start)
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatal("sha256 mismatch")
	}
	t.Logf("1 GiB in %v (%.0f MB/s)", d, float64(n)/d.Seconds()/1e6)
}

// A silent network failure (no RST) is detected by keepalives within 5 s.
func TestKeepaliveDetectsPartition(t *testing.T) {
	c := fakecloud.Start(t)
	tun := open(t, baseConfig(c))
	events := make(chan tunnel.Event, 100)
	defer tun.Watch(func(e tunnel.Event) { events <- e })()
	if err := c.Partition(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitState(t, events, tunnel.Reconnecting, 30*time.Second)
	t.Logf("partition detected after %v", time.Since(start))
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	waitState(t, events, tunnel.Connected, 30*time.Second)
	echo(t, tun, c.EchoAddr)
}

// Parallel dials spread over the pool: each bulk stream gets its own SSH
// connection (its own flow-control window and sshd process), even when the
// dials race.
func TestDialSpreadsOverPool(t *testing.T) {
	c := fakecloud.Start(t)
	cfg := baseConfig(c)
	cfg.PoolSize = 4
	tun := open(t, cfg)
	if !settle(10*time.Second, func() bool {
		tun.mu.Lock()
		defer tun.mu.Unlock()
		return len(tun.live) == 4
	}) {
		t.Fatal("pool did not fill")
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[*conn]int{}
		start = make(chan struct{})
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := tun.Dial(ctx, "tcp", c.EchoAddr)
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { s.Close() })
			mu.Lock()
			conns[s.(*stream).c]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if len(conns) != 4 {
		t.Errorf("4 parallel streams on %d connections, want 4", len(conns))
	}
}
