package javaagent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tether-dev/tether/javaagent"
	"github.com/tether-dev/tether/javaagent/javaagenttest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	javaagenttest.Cleanup()
	os.Exit(code)
}

// fakeTunnel stands in for the tunnel: routed targets map to local servers.
type fakeTunnel struct {
	mu      sync.Mutex
	targets map[string]string // "ip:port" or "name:port" -> local address
	dialed  []string
}

func (f *fakeTunnel) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.dialed = append(f.dialed, addr)
	local, ok := f.targets[addr]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s refused by the proxy machine", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, local)
}

func (f *fakeTunnel) Dialed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.dialed...)
}

func echoServer(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String(), &n
}

func httpServer(t *testing.T, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// agent is a control client speaking the protocol as the Java agent does.
type agent struct {
	c net.Conn
	r *bufio.Reader
}

func dialAgent(t *testing.T, s *javaagent.Server, token string) (*agent, string) {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a := &agent{c: c, r: bufio.NewReader(c)}
	fmt.Fprintf(c, "HELLO %s 17 1\n", token)
	var hello []string
	for {
		l, err := a.r.ReadString('\n')
		if err != nil {
			return a, strings.Join(hello, "|")
		}
		l = strings.TrimSpace(l)
		hello = append(hello, l)
		if l == "END" || strings.HasPrefix(l, "ERR") {
			return a, strings.Join(hello, "|")
		}
	}
}

func (a *agent) call(t *testing.T, line string) string {
	t.Helper()
	fmt.Fprintln(a.c, line)
	a.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	l, err := a.r.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return strings.TrimSpace(l)
}

func startServer(t *testing.T, ft *fakeTunnel, onConn func(target, name string, err error)) *javaagent.Server {
	t.Helper()
	s, err := javaagent.Start(context.Background(), javaagent.Config{
		Dial:    ft.Dial,
		CIDRs:   []netip.Prefix{netip.MustParsePrefix("10.250.0.0/16")},
		Domains: []string{"svc.test"},
		JarDir:  t.TempDir(),
		OnConn:  connFunc(onConn),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestControlProtocol(t *testing.T) {
	echo, _ := echoServer(t)
	ft := &fakeTunnel{targets: map[string]string{"10.250.0.7:7": echo, "db.svc.test:7": echo}}
	var logMu sync.Mutex
	var log []string
	s := startServer(t, ft, func(target, name string, err error) {
		logMu.Lock()
		log = append(log, fmt.Sprintf("%s|%s|%v", target, name, err))
		logMu.Unlock()
	})
	env := s.Env()
	if env["TETHER_AGENT_CONTROL"] != s.Addr() || len(env["TETHER_AGENT_TOKEN"]) < 32 {
		t.Fatalf("env %v", env)
	}

	// Wrong token: refused, connection closed.
	_, hello := dialAgent(t, s, "wrong")
	if hello != "ERR bad token" {
		t.Fatalf("wrong token: %q", hello)
	}

	a, hello := dialAgent(t, s, env["TETHER_AGENT_TOKEN"])
	if hello != "OK|FAKE 198.18.0.0/15|CIDR 10.250.0.0/16|DOMAIN svc.test|END" {
		t.Fatalf("hello %q", hello)
	}

	// A routed IP: a one-shot port that reaches the target.
	ans := a.call(t, "CONNECT 1 10.250.0.7 7")
	var port int
	if _, err := fmt.Sscanf(ans, "PORT 1 %d", &port); err != nil {
		t.Fatalf("CONNECT: %q", ans)
	}
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(c, "ping")
	if l, _ := bufio.NewReader(c).ReadString('\n'); l != "ping\n" {
		t.Fatalf("echo %q", l)
	}
	// One shot: the port is gone.
	if c2, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		c2.Close()
		t.Fatal("second connection to a one-shot port accepted")
	}
	c.Close()

	// Names: a fake address, stable, mapped back on connect.
	ans = a.call(t, "RESOLVE 2 DB.svc.test.")
	if !strings.HasPrefix(ans, "ADDR 2 198.18.") {
		t.Fatalf("RESOLVE: %q", ans)
	}
	fake := strings.Fields(ans)[2]
	if again := a.call(t, "RESOLVE 3 db.svc.test"); again != "ADDR 3 "+fake {
		t.Fatalf("second RESOLVE %q, want %s", again, fake)
	}
	if ip, _ := netip.ParseAddr(fake); func() bool { n, ok := s.NameOf(ip); return !ok || n != "db.svc.test" }() {
		t.Fatalf("NameOf(%s) wrong", fake)
	}
	ans = a.call(t, "CONNECT 4 "+fake+" 7")
	if _, err := fmt.Sscanf(ans, "PORT 4 %d", &port); err != nil {
		t.Fatalf("CONNECT fake: %q", ans)
	}
	c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if d := ft.Dialed(); d[len(d)-1] != "db.svc.test:7" {
		t.Fatalf("the fake address was not dialed by name: %v", d)
	}

	// Refusals become ERR answers (the app's connect failure).
	for _, tc := range []struct{ req, want string }{
		{"RESOLVE 5 example.com", "ERR 5 "},
		{"CONNECT 6 8.8.8.8 53", "ERR 6 tether: 8.8.8.8 is not in the proxy's routes"},
		{"CONNECT 7 10.250.0.9 80", "ERR 7 10.250.0.9:80 refused by the proxy machine"},
		{"CONNECT 8 198.18.200.1 80", "ERR 8 tether: 198.18.200.1 is not a fake address"},
		{"CONNECT 9 10.250.0.7 0", "ERR 9 tether: bad port"},
	} {
		if got := a.call(t, tc.req); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %q, want %q...", tc.req, got, tc.want)
		}
	}
	time.Sleep(100 * time.Millisecond)
	logMu.Lock()
	defer logMu.Unlock()
	joined := strings.Join(log, "\n")
	for _, want := range []string{"10.250.0.7:7||<nil>", "db.svc.test:7|db.svc.test|<nil>", "10.250.0.9:80||10.250.0.9:80 refused"} {
		if !strings.Contains(joined, want) {
			t.Errorf("connection log lacks %q:\n%s", want, joined)
		}
	}
}

func TestFakeRangeOverlapRefused(t *testing.T) {
	_, err := javaagent.Start(context.Background(), javaagent.Config{
		Dial:    (&fakeTunnel{}).Dial,
		CIDRs:   []netip.Prefix{netip.MustParsePrefix("198.0.0.0/8")},
		Domains: []string{"svc.test"},
	})
	if err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("overlap: %v", err)
	}
}

func TestOneShotExpires(t *testing.T) {
	echo, _ := echoServer(t)
	ft := &fakeTunnel{targets: map[string]string{"10.250.0.7:7": echo}}
	var failed atomic.Value
	s := startServer(t, ft, func(target, name string, err error) {
		if err != nil {
			failed.Store(err.Error())
		}
	})
	javaagent.SetOneShotTimeout(t, 200*time.Millisecond)
	a, _ := dialAgent(t, s, s.Env()["TETHER_AGENT_TOKEN"])
	var port int
	if _, err := fmt.Sscanf(a.call(t, "CONNECT 1 10.250.0.7 7"), "PORT 1 %d", &port); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		c.Close()
		t.Fatal("expired one-shot port still accepts")
	}
	if v, _ := failed.Load().(string); !strings.Contains(v, "did not connect") {
		t.Fatalf("log %q", v)
	}
}

func TestJarExtraction(t *testing.T) {
	if !javaagent.Available() {
		t.Skip("jar not embedded (run scripts/javaagent.sh before go test)")
	}
	dir := t.TempDir()
	s, err := javaagent.Start(context.Background(), javaagent.Config{Dial: (&fakeTunnel{}).Dial, JarDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	args := s.JVMArgs()
	if len(args) != 1 || !strings.HasPrefix(args[0], "-javaagent:"+dir+"/javaagent-") || !strings.HasSuffix(args[0], ".jar") {
		t.Fatalf("JVMArgs %v", args)
	}
	b, err := os.ReadFile(s.JarPath())
	want, _ := javaagent.Jar()
	if err != nil || string(b) != string(want) {
		t.Fatalf("extracted jar differs: %v", err)
	}
}

func requireJDKs(t *testing.T) ([]javaagenttest.JDK, javaagenttest.Built) {
	t.Helper()
	if _, err := exec.LookPath("javac"); err != nil {
		t.Skip("javac missing")
	}
	jdks := javaagenttest.JDKs()
	if len(jdks) == 0 {
		t.Skip("no JDK under /usr/lib/jvm")
	}
	b, err := javaagenttest.Build()
	if err != nil {
		t.Fatal(err)
	}
	return jdks, b
}

// TestPatcherOnJDKClasses patches the real class files of every installed
// JDK, and bytecode with every construct that holds an offset, verified.
func TestPatcherOnJDKClasses(t *testing.T) {
	jdks, b := requireJDKs(t)
	for _, j := range jdks {
		t.Run(fmt.Sprint(j.Feature), func(t *testing.T) {
			for _, main := range []string{"PatchJDK", "PatchSelfTest"} {
				args := append(append([]string{}, javaagenttest.VerifyFlags...), "-cp", b.Jar+":"+b.Classes, main)
				out, err := exec.Command(j.Java(), args...).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "OK ") {
					t.Fatalf("%s on JDK %d: %v\n%s", main, j.Feature, err, out)
				}
				t.Logf("JDK %d %s: %s", j.Feature, main, strings.TrimSpace(string(out)))
			}
		})
	}
}

// TestAgentInJVM runs real JVMs (every installed JDK) with the agent and
// -XX:+BytecodeVerificationLocal against the control server, with a fake
// tunnel that maps the routed targets to local servers.
func TestAgentInJVM(t *testing.T) {
	jdks, b := requireJDKs(t)
	echo, _ := echoServer(t)
	web := httpServer(t, "hello from the fake vpc")
	local, localConns := echoServer(t)
	ft := &fakeTunnel{targets: map[string]string{
		"10.250.0.7:7": echo, "10.250.0.80:80": web, "echo.svc.test:7": echo, "web.svc.test:80": web,
	}}
	type run struct {
		jdk      javaagenttest.JDK
		variant  string
		flags    []string
		dnsPatch bool // the getAddressesFromNameService prologue (JDK 8; fallback elsewhere)
	}
	var runs []run
	for _, j := range jdks {
		runs = append(runs, run{jdk: j}, run{jdk: j, variant: "-dnsprologue", dnsPatch: true})
		if j.Feature >= 13 && j.Feature <= 17 {
			// The legacy SocketImpl (AbstractPlainSocketImpl.doConnect), the
			// default of JDK 8-12, still selectable here.
			runs = append(runs, run{jdk: j, variant: "-plainsocketimpl", flags: []string{"-Djdk.net.usePlainSocketImpl=true"}})
		}
	}
	for _, r := range runs {
		j := r.jdk
		name := fmt.Sprint(j.Feature) + r.variant
		t.Run(name, func(t *testing.T) {
			var logMu sync.Mutex
			var log []string
			s := startServer(t, ft, func(target, name string, err error) {
				logMu.Lock()
				log = append(log, fmt.Sprintf("%s|%s|%v", target, name, err))
				logMu.Unlock()
			})
			before := localConns.Load()
			args := append(append([]string{}, javaagenttest.VerifyFlags...), "-javaagent:"+b.Jar, "-Dprobe.netty=1", "-cp", b.Classes)
			args = append(args, r.flags...)
			args = append(args,
				"AgentProbe", "10.250.0.80:80", "10.250.0.7:7", "echo.svc.test", local, "web.svc.test")
			cmd := exec.Command(j.Java(), args...)
			cmd.Env = os.Environ()
			for k, v := range s.Env() {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			cmd.Env = append(cmd.Env, "TETHER_AGENT_DEBUG=1")
			if r.dnsPatch {
				cmd.Env = append(cmd.Env, "TETHER_AGENT_DNS_PATCH=1")
			}
			t0 := time.Now()
			out, err := cmd.CombinedOutput()
			t.Logf("JDK %d (%s):\n%s", j.Feature, time.Since(t0).Round(time.Millisecond), out)
			if err != nil {
				t.Fatalf("probe failed: %v", err)
			}
			if j.Feature >= 9 && !strings.Contains(string(out), "hooks in java.net.TetherTrampoline") {
				t.Errorf("hooks not defined in java.base")
			}
			if r.dnsPatch && !strings.Contains(string(out), "dns prologue") {
				t.Errorf("the DNS prologue was not used")
			}
			if len(r.flags) > 0 && !strings.Contains(string(out), "legacy SocketImpl connect to") {
				t.Errorf("the legacy SocketImpl path was not taken")
			}
			res := javaagenttest.Results(string(out))
			for _, c := range []string{"socket", "channel-blocking", "channel-selector", "async", "httpclient", "urlconnection",
				"lookup", "socket-by-name", "channel-by-name", "selector-by-name", "httpclient-by-name", "urlconnection-by-name",
				"unresolved", "udp", "local", "socket-remote-address", "channel-family-INET", "channel-family-INET6"} {
				if !strings.HasPrefix(res[c], "OK") {
					t.Errorf("%s: %q", c, res[c])
				}
			}
			if j.Feature >= 21 && !strings.HasPrefix(res["virtual-thread"], "OK") {
				t.Errorf("virtual-thread: %q", res["virtual-thread"])
			}
			// The resolver provider (18+) and the name service (9-17) keep the
			// name; the DNS prologue (JDK 8, fallback) names the address by its literal.
			if want := "echo.svc.test/198.18."; !r.dnsPatch && !strings.Contains(res["lookup"], want) || !strings.Contains(res["lookup"], "/198.18.") {
				t.Errorf("lookup did not give a fake address: %q", res["lookup"])
			}
			if n := localConns.Load() - before; n != 2 {
				t.Errorf("local echo server saw %d connections, want 2 (untouched)", n)
			}
			logMu.Lock()
			defer logMu.Unlock()
			if !strings.Contains(strings.Join(log, "\n"), "Netty native transport in use") ||
				!strings.Contains(string(out), "-Dio.netty.transport.noNative=true") {
				t.Errorf("no Netty native transport warning in the connection log:\n%s", strings.Join(log, "\n"))
			}
			for _, l := range log {
				if strings.Contains(l, "127.0.0.1") {
					t.Errorf("a local connect went to the backend: %s", l)
				}
			}
		})
	}
}

// TestNoCDSWarning: the agent leaves the boot class path alone on JDK 9+
// (an append prints "Sharing is only supported for boot loader classes..."
// on every launch and turns class sharing off for application classes).
// The boot class path fallback still works.
func TestNoCDSWarning(t *testing.T) {
	jdks, b := requireJDKs(t)
	echo, _ := echoServer(t)
	ft := &fakeTunnel{targets: map[string]string{"10.250.0.7:7": echo}}
	s := startServer(t, ft, nil)
	local, _ := echoServer(t)
	for _, j := range jdks {
		for _, fallback := range []bool{false, true} {
			args := []string{"-javaagent:" + b.Jar, "-cp", b.Classes}
			if fallback {
				args = append(args, "-Dtether.agent.bootAppend=1")
			}
			cmd := exec.Command(j.Java(), append(args, "AgentProbe", "10.250.0.7:7", "10.250.0.7:7", "x.svc.test", local)...)
			cmd.Env = os.Environ()
			for k, v := range s.Env() {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, _ := cmd.CombinedOutput()
			res := javaagenttest.Results(string(out))
			for _, c := range []string{"socket", "channel-selector", "async"} {
				if !strings.HasPrefix(res[c], "OK") {
					t.Errorf("JDK %d fallback=%v %s: %q\n%s", j.Feature, fallback, c, res[c], out)
				}
			}
			if warned := strings.Contains(string(out), "Sharing is only supported"); warned != fallback {
				t.Errorf("JDK %d fallback=%v: CDS warning %v\n%s", j.Feature, fallback, warned, out)
			}
		}
	}
}

// TestAgentCannotStart: an unreachable control address, garbage settings or
// none at all never stop the JVM.
func TestAgentCannotStart(t *testing.T) {
	jdks, b := requireJDKs(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	for _, j := range jdks {
		for _, env := range [][]string{
			{"TETHER_AGENT_CONTROL=" + dead, "TETHER_AGENT_TOKEN=x"},
			{"TETHER_AGENT_CONTROL=nonsense", "TETHER_AGENT_TOKEN=x"},
			{},
		} {
			cmd := exec.Command(j.Java(), "-javaagent:"+b.Jar, "-version")
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "tether-agent: disabled") {
				t.Errorf("JDK %d %v: %v\n%s", j.Feature, env, err, out)
			}
		}
	}
}

// TestRouteAll: 0.0.0.0/0 without domains is allowed (no fake addresses),
// and loopback is never forwarded.
func TestRouteAll(t *testing.T) {
	echo, _ := echoServer(t)
	ft := &fakeTunnel{targets: map[string]string{"192.0.2.7:7": echo}}
	all := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	s, err := javaagent.Start(context.Background(), javaagent.Config{Dial: ft.Dial, CIDRs: all})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, hello := dialAgent(t, s, s.Env()["TETHER_AGENT_TOKEN"])
	if hello != "OK|CIDR 0.0.0.0/0|CIDR ::/0|END" {
		t.Fatalf("hello %q", hello)
	}
	if ans := a.call(t, "CONNECT 1 192.0.2.7 7"); !strings.HasPrefix(ans, "PORT 1 ") {
		t.Fatalf("%q", ans)
	}
	if ans := a.call(t, "CONNECT 2 127.0.0.1 7"); !strings.HasPrefix(ans, "ERR 2 ") {
		t.Fatalf("loopback: %q", ans)
	}
	if _, err := javaagent.Start(context.Background(), javaagent.Config{Dial: ft.Dial, CIDRs: all, Domains: []string{"x.test"}}); err == nil {
		t.Fatal("route-all with domains: the fake range overlaps, want an error")
	}
}

// TestStartupOverhead (TETHER_JAVAAGENT_BENCH=1) logs the JVM start-to-exit
// time of a tiny program with and without the agent, per JDK.
func TestStartupOverhead(t *testing.T) {
	if os.Getenv("TETHER_JAVAAGENT_BENCH") == "" {
		t.Skip("set TETHER_JAVAAGENT_BENCH=1")
	}
	jdks, b := requireJDKs(t)
	s := startServer(t, &fakeTunnel{}, nil)
	local, _ := echoServer(t)
	for _, j := range jdks {
		for _, agent := range []bool{false, true, false, true} {
			const runs = 8
			var total time.Duration
			for i := 0; i < runs; i++ {
				args := []string{"-cp", b.Classes, "AgentBench", local, "1", "0"}
				if agent {
					args = append([]string{"-javaagent:" + b.Jar}, args...)
				}
				cmd := exec.Command(j.Java(), args...)
				cmd.Env = os.Environ()
				for k, v := range s.Env() {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
				t0 := time.Now()
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				total += time.Since(t0)
			}
			t.Logf("JDK %d agent=%v: mean JVM run %s", j.Feature, agent, (total / runs).Round(time.Millisecond))
		}
	}
}

// connFunc adapts a (target, name, err) callback to Config.OnConn.
func connFunc(f func(target, name string, err error)) func(javaagent.Conn) {
	if f == nil {
		return nil
	}
	return func(c javaagent.Conn) { f(c.Target, c.Name, c.Err) }
}
