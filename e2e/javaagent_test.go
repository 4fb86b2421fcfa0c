package e2e

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/internal/fakecloud"
	"github.com/tether-dev/tether/javaagent"
	"github.com/tether-dev/tether/javaagent/javaagenttest"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/tunnel"
)

// agentCloud is a fake cloud, an SSH tunnel to its bastion, and the Java
// agent's control server in front of the tunnel.
type agentCloud struct {
	cloud *fakecloud.Cloud
	tun   tunnel.Tunnel
	srv   *javaagent.Server
	jar   string // -javaagent jar: the embedded one, else a fresh build
	built javaagenttest.Built
	jdks  []javaagenttest.JDK

	mu  sync.Mutex
	log []string
}

func startAgentCloud(t *testing.T) *agentCloud {
	t.Helper()
	requireJava(t)
	jdks := javaagenttest.JDKs()
	if len(jdks) == 0 {
		t.Skip("no JDK under /usr/lib/jvm")
	}
	built, err := javaagenttest.Build()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(javaagenttest.Cleanup)
	c := fakecloud.Start(t)
	host, port, _ := net.SplitHostPort(c.SSHAddr)
	p, _ := strconv.Atoi(port)
	ctx := ctxT(t)
	tun, err := sshplugin.Open(ctx, sshplugin.Config{Host: host, Port: p, User: c.User, IdentityFiles: []string{c.IdentityFile},
		KnownHostsFile: c.KnownHostsFile, SSHConfigFile: "none"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })
	a := &agentCloud{cloud: c, tun: tun, built: built, jdks: jdks}
	srv, err := javaagent.Start(ctx, javaagent.Config{
		Dial:    tun.Dial,
		CIDRs:   []netip.Prefix{netip.MustParsePrefix(c.VPCCIDR)},
		Domains: []string{fakecloud.Zone},
		JarDir:  t.TempDir(),
		OnConn: func(c javaagent.Conn) {
			a.mu.Lock()
			a.log = append(a.log, fmt.Sprintf("%s|%s|%v", c.Target, c.Name, c.Err))
			a.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	a.srv = srv
	// The embedded jar (what tether ships) when it is current; the jar build
	// is reproducible, so a difference means dist/ is stale.
	a.jar = built.Jar
	if args := srv.JVMArgs(); len(args) == 1 {
		emb, _ := os.ReadFile(srv.JarPath())
		fresh, _ := os.ReadFile(built.Jar)
		if string(emb) == string(fresh) {
			a.jar = strings.TrimPrefix(args[0], "-javaagent:")
		} else {
			t.Logf("embedded agent jar is stale (run scripts/javaagent.sh): using a fresh build of javaagent/java")
		}
	} else {
		t.Logf("agent jar not embedded in this build: using a fresh build of javaagent/java")
	}
	return a
}

// java runs a JVM of jdk with the agent and the session's environment.
func (a *agentCloud) java(t *testing.T, jdk javaagenttest.JDK, env map[string]string, args ...string) (string, error) {
	t.Helper()
	full := append(append([]string{}, javaagenttest.VerifyFlags...), "-javaagent:"+a.jar, "-cp", a.built.Classes)
	cmd := exec.CommandContext(ctxT(t), jdk.Java(), append(full, args...)...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func localEcho(t *testing.T) (string, func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	n := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestJavaAgentReachesVPC: on every installed JDK (17 and 25 here), with
// the agent and full bytecode verification, every connect path reaches vpc
// services by IP and by private name through the SSH tunnel; a loopback
// connect is untouched; a JVM whose agent cannot start still runs.
func TestJavaAgentReachesVPC(t *testing.T) {
	a := startAgentCloud(t)
	c := a.cloud
	local, localConns := localEcho(t)
	for _, jdk := range a.jdks {
		t.Run(strconv.Itoa(jdk.Feature), func(t *testing.T) {
			a.mu.Lock()
			a.log = nil
			a.mu.Unlock()
			before := localConns()
			t0 := time.Now()
			out, err := a.java(t, jdk, a.srv.Env(), "AgentProbe", c.HTTPAddr, c.EchoAddr, c.DBName, local, c.HTTPName)
			t.Logf("JDK %d (%s):\n%s", jdk.Feature, time.Since(t0).Round(time.Millisecond), out)
			if err != nil {
				t.Fatalf("probe: %v", err)
			}
			res := javaagenttest.Results(out)
			for _, k := range []string{"socket", "channel-blocking", "channel-selector", "async", "httpclient", "urlconnection",
				"lookup", "socket-by-name", "channel-by-name", "selector-by-name", "httpclient-by-name", "urlconnection-by-name",
				"unresolved", "udp", "local"} {
				if !strings.HasPrefix(res[k], "OK") {
					t.Errorf("%s: %q", k, res[k])
				}
			}
			if !strings.Contains(res["httpclient"], strings.TrimSpace(c.HTTPBody)) || !strings.Contains(res["httpclient-by-name"], strings.TrimSpace(c.HTTPBody)) {
				t.Errorf("HttpClient did not get the vpc body: %q / %q", res["httpclient"], res["httpclient-by-name"])
			}
			if jdk.Feature >= 21 && !strings.HasPrefix(res["virtual-thread"], "OK") {
				t.Errorf("virtual-thread: %q", res["virtual-thread"])
			}
			if n := localConns() - before; n != 2 {
				t.Errorf("loopback server saw %d connections, want 2", n)
			}
			a.mu.Lock()
			log := strings.Join(a.log, "\n")
			a.mu.Unlock()
			_, echoPort, _ := net.SplitHostPort(c.EchoAddr)
			for _, want := range []string{c.EchoAddr + "||<nil>", c.DBName + ":" + echoPort + "|" + c.DBName + "|<nil>"} {
				if !strings.Contains(log, want) {
					t.Errorf("connection log lacks %q:\n%s", want, log)
				}
			}
			if strings.Contains(log, "127.0.0.1") {
				t.Errorf("a loopback connect reached the backend:\n%s", log)
			}

			// A refusal in the vpc is the app's connect failure.
			out, _ = a.java(t, jdk, a.srv.Env(), "AgentBench", c.ClosedAddr, "1", "0")
			if !strings.Contains(out, "ConnectException") || !strings.Contains(out, "refused") {
				t.Errorf("connect to a closed vpc port: %s", out)
			}

			// The agent cannot reach its backend: the JVM runs anyway.
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			dead := ln.Addr().String()
			ln.Close()
			out, err = a.java(t, jdk, map[string]string{"TETHER_AGENT_CONTROL": dead, "TETHER_AGENT_TOKEN": "x"}, "AgentBench", local, "3", "0")
			if err != nil || !strings.Contains(out, "tether-agent: disabled") || !strings.Contains(out, "BENCH n=3") {
				t.Errorf("JVM with an agent that cannot start: %v\n%s", err, out)
			}
		})
	}
}

// TestJavaAgentLatency measures connect latency (java.net.Socket connect +
// one echo round trip): to a loopback server with and without the agent,
// and to a vpc service through the agent and through the SOCKS JVM args.
func TestJavaAgentLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("latency figures")
	}
	a := startAgentCloud(t)
	c := a.cloud
	local, _ := localEcho(t)
	ch, err := channel.Start(ctxT(t), channel.Config{Tunnel: a.tun, RouteAll: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	_, socksPort, _ := net.SplitHostPort(ch.SOCKSAddr())
	n := "300"
	for _, jdk := range a.jdks {
		measure := func(what string, agent bool, extra []string, target string) {
			args := []string{}
			if agent {
				args = append(args, "-javaagent:"+a.jar)
			}
			args = append(append(args, extra...), "-cp", a.built.Classes, "AgentBench", target, n)
			cmd := exec.CommandContext(ctxT(t), jdk.Java(), args...)
			cmd.Env = os.Environ()
			if agent {
				for k, v := range a.srv.Env() {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
			}
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "BENCH") {
				t.Errorf("JDK %d %s: %v\n%s", jdk.Feature, what, err, out)
				return
			}
			t.Logf("JDK %d %-32s %s", jdk.Feature, what, strings.TrimSpace(string(out)[strings.Index(string(out), "BENCH"):]))
		}
		measure("loopback, no agent", false, nil, local)
		measure("loopback, agent", true, nil, local)
		measure("vpc echo, agent", true, nil, c.EchoAddr)
		measure("vpc echo, SOCKS args", false, []string{"-DsocksProxyHost=127.0.0.1", "-DsocksProxyPort=" + socksPort,
			"-DsocksProxyVersion=5", "-DsocksNonProxyHosts=localhost|127.*|[::1]",
			// In this test process the channel's same-user check reads the wrong
			// namespace (the fake cloud moves the main thread): use credentials.
			"-Dbench.socksUser=" + ch.Username(), "-Dbench.socksPass=" + ch.Password()}, c.EchoAddr)
	}
}
