package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/tether-dev/tether/client"
	"github.com/tether-dev/tether/internal/fakecloud"
	"github.com/tether-dev/tether/internal/syncbuf"
	"github.com/tether-dev/tether/protocol"
)

// probeJava reaches vpc services the way blocking Java clients do:
// HttpURLConnection by IP and by private name, and a raw java.net.Socket
// to a private name (as JDBC drivers do).
const probeJava = `
import java.io.*;
import java.net.*;

public class Probe {
    static String get(String u) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL(u).openConnection();
        c.setConnectTimeout(5000);
        c.setReadTimeout(5000);
        try (InputStream in = c.getInputStream()) {
            return new String(in.readAllBytes(), "UTF-8").trim();
        }
    }
    public static void main(String[] args) throws Exception {
        System.out.println("by ip: " + get(args[0]));
        System.out.println("by name: " + get(args[1]));
        String[] hp = args[2].split(":");
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(hp[0], Integer.parseInt(hp[1])), 5000);
            s.getOutputStream().write("ping\n".getBytes());
            BufferedReader r = new BufferedReader(new InputStreamReader(s.getInputStream()));
            System.out.println("echo: " + r.readLine());
        }
    }
}
`

// cloudWorkspace starts a fake cloud and writes a workspace with a proxy
// to its bastion and a java run configuration of the probe.
type cloudWS struct {
	cloud *fakecloud.Cloud
	dir   string
}

func compileProbe(t testing.TB, dir string) string {
	t.Helper()
	classes := filepath.Join(dir, "classes")
	if err := os.MkdirAll(classes, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "Probe.java")
	if err := os.WriteFile(src, []byte(probeJava), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("javac", "-d", classes, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	return classes
}

func startCloudWS(t testing.TB, enabled bool) *cloudWS {
	t.Helper()
	requireJava(t)
	c := fakecloud.Start(t)
	dir := t.TempDir()
	classes := compileProbe(t, dir)
	host, port, _ := net.SplitHostPort(c.SSHAddr)
	_, echoPort, _ := net.SplitHostPort(c.EchoAddr)
	_, httpPort, _ := net.SplitHostPort(c.HTTPAddr)
	yaml := fmt.Sprintf(`version: 1
proxies:
  - name: bastion
    ssh: {host: %s, port: %s, user: %s, identityFile: %s, knownHostsFile: %s, strictHostKeyChecking: "yes"}
    routes: {cidrs: [%s], domains: [%s]}
configurations:
  - name: probe
    type: java
    java:
      mainClass: Probe
      classpath: [%s]
      args: [http://%s/, "http://%s:%s/", "%s:%s"]
    interconnect: {enabled: %v, proxy: bastion}
  - name: curl
    type: exec
    exec: {command: [curl, -sS, --max-time, "10", "http://%s:%s/"]}
    interconnect: {enabled: true, proxy: bastion}
`, host, port, c.User, c.IdentityFile, c.KnownHostsFile, c.VPCCIDR, fakecloud.Zone, classes,
		c.HTTPAddr, c.HTTPName, httpPort, c.DBName, echoPort, enabled, c.HTTPName, httpPort)
	if err := os.WriteFile(filepath.Join(dir, "tether.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return &cloudWS{cloud: c, dir: dir}
}

func requireJava(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"java", "javac"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (make deps installs it)", tool)
			}
			t.Skipf("%s is missing", tool)
		}
	}
}

func tetherCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, tetherBin, args...)
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// TestLaunchJavaThroughSSH: the headless path — a real JVM reaches vpc
// services by IP and by private name through `tether launch`, and cannot
// when the toggle is off.
func TestLaunchJavaThroughSSH(t *testing.T) {
	w := startCloudWS(t, true)
	ctx := ctxT(t)
	var stdout, stderr syncbuf.Buffer
	cmd := tetherCmd(ctx, "launch", "--workspace", w.dir, "probe")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tether launch: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"by ip: " + w.cloud.HTTPBody, "by name: " + w.cloud.HTTPBody, "echo: ping"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s\nstderr:\n%s", want, out, stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), "connections: 3 (3 through the tunnel") {
		t.Errorf("no connection summary:\n%s", stderr.String())
	}

	// exec configs get proxy environment variables.
	stdout, stderr = syncbuf.Buffer{}, syncbuf.Buffer{}
	cmd = tetherCmd(ctx, "launch", "--workspace", w.dir, "curl")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stdout.String(), w.cloud.HTTPBody) {
		t.Fatalf("curl through tether: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}

	// Toggle off: nothing injected, the vpc is unreachable, the app fails.
	off := startCloudWS(t, false)
	stdout, stderr = syncbuf.Buffer{}, syncbuf.Buffer{}
	cmd = tetherCmd(ctx, "launch", "--workspace", off.dir, "probe")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil || strings.Contains(stdout.String(), "by ip: ") {
		t.Fatalf("with interconnect off the app reached the vpc: %v\n%s", err, stdout.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit code %d, want the app's 1\n%s", code, stderr.String())
	}
}

// TestLaunchOverJSONRPC: the IDE paths — launch/start with output and state
// notifications, launch/prepare for an IDE that starts the JVM itself,
// interconnect/status, proxy/test.
func TestLaunchOverJSONRPC(t *testing.T) {
	w := startCloudWS(t, true)
	p := startServe(t, "--workspace", w.dir)
	initialize(t, p.Client, map[string]any{})
	ctx := ctxT(t)

	var st protocol.LaunchStartResult
	if err := p.Call(ctx, "launch/start", map[string]any{"config": "probe", "workDoneToken": "w1"}, &st); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitNotification(ctx, func(m client.Message) bool {
		return m.Method == "launch/state" && strings.Contains(string(m.Params), `"exited"`) && strings.Contains(string(m.Params), st.LaunchID)
	}); err != nil {
		t.Fatal(err)
	}
	var output strings.Builder
	var exited protocol.LaunchStateParams
	records := 0
	for _, m := range p.Notifications() {
		switch m.Method {
		case "launch/output":
			var o protocol.LaunchOutputParams
			_ = json.Unmarshal(m.Params, &o)
			output.WriteString(o.Text)
		case "launch/state":
			var s protocol.LaunchStateParams
			_ = json.Unmarshal(m.Params, &s)
			if s.State == protocol.StateExited {
				exited = s
			}
		case "interconnect/connection":
			records++
		}
	}
	if exited.ExitCode == nil || *exited.ExitCode != 0 || !strings.Contains(output.String(), "echo: ping") {
		t.Fatalf("exited %+v, output:\n%s", exited, output.String())
	}
	if records != 3 {
		t.Errorf("%d connection records, want 3", records)
	}

	var prep protocol.LaunchPrepareResult
	if err := p.Call(ctx, "launch/prepare", map[string]any{"config": "probe"}, &prep); err != nil {
		t.Fatal(err)
	}
	var status protocol.InterconnectStatusResult
	if err := p.Call(ctx, "interconnect/status", map[string]any{}, &status); err != nil {
		t.Fatal(err)
	}
	if len(status.Tunnels) != 1 || status.Tunnels[0].State != "connected" || status.Tunnels[0].SessionID != prep.SessionID {
		t.Fatalf("status = %+v", status)
	}
	// The IDE starts the JVM itself with the returned arguments.
	_, httpPort, _ := net.SplitHostPort(w.cloud.HTTPAddr)
	_, echoPort, _ := net.SplitHostPort(w.cloud.EchoAddr)
	args := append(prep.VMArgs, "-cp", filepath.Join(w.dir, "classes"), "Probe", "http://"+w.cloud.HTTPAddr+"/",
		"http://"+w.cloud.HTTPName+":"+httpPort+"/", w.cloud.DBName+":"+echoPort)
	java := exec.CommandContext(ctx, "java", args...)
	java.Env = withEnv(prep.Env)
	out, err := java.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "by name: "+w.cloud.HTTPBody) {
		t.Fatalf("java with prepared args: %v\n%s", err, out)
	}
	if err := p.Call(ctx, "launch/release", map[string]any{"sessionId": prep.SessionID}, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "interconnect/status", map[string]any{}, &status); err != nil || len(status.Tunnels) != 0 {
		t.Fatalf("after release: %+v %v", status, err)
	}
	expectCode(t, p.Call(ctx, "launch/release", map[string]any{"sessionId": "nope"}, nil), protocol.CodeNotFound, "nope")

	var test protocol.ProxyTestResult
	if err := p.Call(ctx, "proxy/test", map[string]any{"name": "bastion", "target": w.cloud.EchoAddr}, &test); err != nil {
		t.Fatal(err)
	}
	if !test.OK || len(test.Steps) != 4 {
		t.Fatalf("proxy/test = %+v", test)
	}
	if err := p.Call(ctx, "proxy/test", map[string]any{"name": "bastion", "target": w.cloud.ClosedAddr}, &test); err != nil {
		t.Fatal(err)
	}
	if test.OK || test.Steps[3].Name != "dial" || !strings.Contains(test.Steps[3].Message, "refused by the proxy machine") {
		t.Fatalf("proxy/test to a closed port = %+v", test)
	}

	// A long-running app is stopped by launch/stop; nothing is left.
	sleeper := map[string]any{"name": "sleeper", "type": "exec", "exec": map[string]any{"command": []string{"sleep", "60"}},
		"interconnect": map[string]any{"enabled": true, "proxy": "bastion"}}
	if err := p.Call(ctx, "runConfig/save", map[string]any{"config": sleeper}, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "launch/start", map[string]any{"config": "sleeper"}, &st); err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "launch/stop", map[string]any{"launchId": st.LaunchID}, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "interconnect/status", map[string]any{}, &status); err != nil || len(status.Tunnels) != 0 {
		t.Fatalf("after stop: %+v %v", status, err)
	}
}

// TestHostKeyQuestions: an unknown key is asked about in the IDE (and
// remembered when trusted); a changed key is refused without asking.
func TestHostKeyQuestions(t *testing.T) {
	w := startCloudWS(t, true)
	if err := os.WriteFile(w.cloud.KnownHostsFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "--workspace", w.dir)
	var asked atomic.Int32
	p.OnRequest = func(method string, params json.RawMessage) (any, error) {
		if method != "window/showMessageRequest" || !strings.Contains(string(params), "SHA256:") {
			return nil, fmt.Errorf("unexpected %s %s", method, params)
		}
		asked.Add(1)
		return map[string]string{"title": "Trust and connect"}, nil
	}
	initialize(t, p.Client, map[string]any{})
	ctx := ctxT(t)
	var test protocol.ProxyTestResult
	if err := p.Call(ctx, "proxy/test", map[string]any{"name": "bastion"}, &test); err != nil || !test.OK {
		t.Fatalf("proxy/test: %+v %v", test, err)
	}
	if asked.Load() != 1 {
		t.Fatalf("asked %d times", asked.Load())
	}
	if kh, _ := os.ReadFile(w.cloud.KnownHostsFile); len(kh) == 0 {
		t.Fatal("trusted key was not added to known_hosts")
	}

	if err := w.cloud.RotateHostKey(); err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "proxy/test", map[string]any{"name": "bastion"}, &test); err != nil {
		t.Fatal(err)
	}
	if test.OK || test.Steps[len(test.Steps)-1].Name != "hostKey" || !strings.Contains(test.Steps[len(test.Steps)-1].Message, "changed") {
		t.Fatalf("changed key: %+v", test)
	}
	var stderr syncbuf.Buffer
	cmd := tetherCmd(ctx, "launch", "--workspace", w.dir, "probe")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "changed") {
		t.Fatalf("launch with a changed host key: %v\n%s", err, stderr.String())
	}
	if asked.Load() != 1 {
		t.Fatal("a changed key was asked about")
	}
}

// TestConnectBulkAndConcurrent: `tether connect` holds a tunnel; 1 GB comes
// through with the right checksum and 1000 concurrent connections succeed;
// wrong SOCKS credentials are refused.
func TestConnectBulkAndConcurrent(t *testing.T) {
	w := startCloudWS(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cmd := tetherCmd(ctx, "connect", "--workspace", w.dir, "bastion", "--output", "json")
	out, _ := cmd.StdoutPipe()
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	var info map[string]string
	if err := json.NewDecoder(bufio.NewReader(out)).Decode(&info); err != nil {
		t.Fatalf("connect output: %v\n%s", err, stderr.String())
	}
	auth := &proxy.Auth{User: info["username"], Password: info["password"]}
	dialer, err := proxy.SOCKS5("tcp", info["socks5"], auth, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	cd := dialer.(proxy.ContextDialer)

	bad, _ := proxy.SOCKS5("tcp", info["socks5"], &proxy.Auth{User: info["username"], Password: "wrong"}, proxy.Direct)
	if c, err := bad.Dial("tcp", w.cloud.EchoAddr); err == nil {
		c.Close()
		t.Fatal("wrong SOCKS credentials accepted")
	}

	size := int64(1 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	tr := &http.Transport{DialContext: cd.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("http://%s/bytes?n=%d", w.cloud.HTTPAddr, size))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("read %d of %d: %v", n, size, err)
	}
	want := sha256.New()
	_, _ = io.Copy(want, fakecloud.PseudoRandom(size))
	if hex.EncodeToString(h.Sum(nil)) != hex.EncodeToString(want.Sum(nil)) {
		t.Fatal("checksum mismatch")
	}
	t.Logf("%d MiB in %s", size>>20, time.Since(start).Round(time.Millisecond))

	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := cd.DialContext(ctx, "tcp", w.cloud.EchoAddr)
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			msg := fmt.Sprintf("hello %d\n", i)
			_, _ = c.Write([]byte(msg))
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != msg {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of 1000 concurrent connections failed\n%s", failed.Load(), stderr.String())
	}
}

// TestReconnectKeepsApp: sshd dies under a prepared session; the IDE sees
// the tunnel go reconnecting and back to connected, and the app's next
// connections work without restarting it.
func TestReconnectKeepsApp(t *testing.T) {
	w := startCloudWS(t, true)
	p := startServe(t, "--workspace", w.dir)
	initialize(t, p.Client, map[string]any{})
	ctx := ctxT(t)
	var prep protocol.LaunchPrepareResult
	if err := p.Call(ctx, "launch/prepare", map[string]any{"config": "probe"}, &prep); err != nil {
		t.Fatal(err)
	}
	w.cloud.StopSSHD()
	state := func(s string) func(client.Message) bool {
		return func(m client.Message) bool {
			return m.Method == "interconnect/status" && strings.Contains(string(m.Params), `"state":"`+s+`"`)
		}
	}
	if _, err := p.WaitNotification(ctx, state("reconnecting")); err != nil {
		t.Fatal(err)
	}
	if err := w.cloud.StartSSHD(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitNotification(ctx, state("connected")); err != nil {
		t.Fatal(err)
	}
	_, httpPort, _ := net.SplitHostPort(w.cloud.HTTPAddr)
	_, echoPort, _ := net.SplitHostPort(w.cloud.EchoAddr)
	args := append(prep.VMArgs, "-cp", filepath.Join(w.dir, "classes"), "Probe", "http://"+w.cloud.HTTPAddr+"/",
		"http://"+w.cloud.HTTPName+":"+httpPort+"/", w.cloud.DBName+":"+echoPort)
	java := exec.CommandContext(ctx, "java", args...)
	java.Env = withEnv(prep.Env)
	if out, err := java.CombinedOutput(); err != nil {
		t.Fatalf("after reconnect: %v\n%s", err, out)
	}
}

// TestDisconnectStopsLaunches: an app started by an IDE that goes away is
// stopped, with its whole process tree; so is one whose backend is killed.
func TestDisconnectStopsLaunches(t *testing.T) {
	ws := t.TempDir()
	marker := fmt.Sprintf("%d", 900000+os.Getpid()%99999)
	script := fmt.Sprintf("sleep %s & sleep %s; wait", marker, marker)
	cfg := fmt.Sprintf("version: 1\nconfigurations:\n  - name: sleeper\n    type: exec\n    exec: {command: [sh, -c, %q]}\n", script)
	if err := os.WriteFile(filepath.Join(ws, "tether.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	running := func() int {
		out, _ := exec.Command("pgrep", "-f", "sleep "+marker).Output()
		return len(strings.Fields(string(out)))
	}
	waitGone := func(what string) {
		for i := 0; running() > 0; i++ {
			if i > 100 {
				t.Fatalf("%s: %d processes left", what, running())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, kill := range []bool{false, true} {
		p := startServe(t, "--workspace", ws)
		initialize(t, p.Client, map[string]any{})
		if err := p.Call(ctxT(t), "launch/start", map[string]any{"config": "sleeper"}, nil); err != nil {
			t.Fatal(err)
		}
		for i := 0; running() < 2; i++ {
			if i > 100 {
				t.Fatal("the app did not start its children")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if kill {
			_ = p.cmd.Process.Kill() // the backend dies: its supervisor stops the tree
			p.exitCode(t)
			waitGone("backend killed")
		} else {
			p.Close()
			p.exitCode(t)
			waitGone("client disconnect")
		}
	}
}

// TestPasswordAndAgentAuth: a password is asked in the IDE
// (window/showInputRequest) and refused on the CLI without a terminal; a
// key held by ssh-agent works without an identity file.
func TestPasswordAndAgentAuth(t *testing.T) {
	w := startCloudWS(t, true)
	pw, err := w.cloud.EnablePasswordAuth()
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(w.cloud.SSHAddr)
	yaml := fmt.Sprintf(`version: 1
proxies:
  - name: pw
    ssh: {host: %s, port: %s, user: %s, knownHostsFile: %s}
  - name: agent
    ssh: {host: %s, port: %s, user: %s, knownHostsFile: %s}
configurations:
  - name: pwprobe
    type: exec
    exec: {command: ["true"]}
    interconnect: {enabled: true, proxy: pw}
`, host, port, fakecloud.PasswordUser, w.cloud.KnownHostsFile, host, port, w.cloud.User, w.cloud.KnownHostsFile)
	if err := os.WriteFile(filepath.Join(w.dir, "tether.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	p := startServe(t, "--workspace", w.dir)
	var asked atomic.Int32
	p.OnRequest = func(method string, params json.RawMessage) (any, error) {
		if method != "window/showInputRequest" || !strings.Contains(string(params), `"secret":true`) {
			return nil, fmt.Errorf("unexpected %s %s", method, params)
		}
		asked.Add(1)
		return map[string]string{"value": pw}, nil
	}
	initialize(t, p.Client, map[string]any{})
	ctx := ctxT(t)
	var test protocol.ProxyTestResult
	if err := p.Call(ctx, "proxy/test", map[string]any{"name": "pw"}, &test); err != nil || !test.OK {
		t.Fatalf("password via the IDE: %+v %v", test, err)
	}
	if asked.Load() == 0 {
		t.Fatal("the password was not asked")
	}
	out, err := tetherCmd(ctx, "launch", "--workspace", w.dir, "pwprobe").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no terminal") {
		t.Fatalf("CLI without a terminal: %v\n%s", err, out)
	}

	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	for i := 0; i < 50; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	add := exec.Command("ssh-add", w.cloud.IdentityFile)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	t.Setenv("SSH_AUTH_SOCK", sock)
	p2 := startServe(t, "--workspace", w.dir)
	initialize(t, p2.Client, map[string]any{})
	if err := p2.Call(ctx, "proxy/test", map[string]any{"name": "agent"}, &test); err != nil || !test.OK {
		t.Fatalf("ssh-agent: %+v %v", test, err)
	}
}

// withEnv is the test's environment plus what launch/prepare returned.
func withEnv(extra map[string]string) []string {
	env := os.Environ()
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// nioJava uses the clients that ignore SOCKS properties: HttpClient and a
// SocketChannel, both by private name.
const nioJava = `
import java.net.*;
import java.net.http.*;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

public class NioProbe {
    public static void main(String[] args) throws Exception {
        HttpClient c = HttpClient.newHttpClient();
        HttpResponse<String> r = c.send(HttpRequest.newBuilder(URI.create(args[0])).build(), HttpResponse.BodyHandlers.ofString());
        System.out.println("httpclient: " + r.body().trim());
        String[] hp = args[1].split(":");
        try (SocketChannel ch = SocketChannel.open(new InetSocketAddress(hp[0], Integer.parseInt(hp[1])))) {
            ch.write(ByteBuffer.wrap("nio\n".getBytes()));
            ByteBuffer b = ByteBuffer.allocate(16);
            ch.read(b);
            System.out.println("channel: " + new String(b.array(), 0, b.position()).trim());
        }
    }
}
`

// TestLaunchJavaAgentNIO: with the Java agent (the default), NIO clients
// reach private names through `tether launch`.
func TestLaunchJavaAgentNIO(t *testing.T) {
	w := startCloudWS(t, true)
	dir := t.TempDir()
	src := filepath.Join(dir, "NioProbe.java")
	if err := os.WriteFile(src, []byte(nioJava), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("javac", "-d", dir, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	_, httpPort, _ := net.SplitHostPort(w.cloud.HTTPAddr)
	_, echoPort, _ := net.SplitHostPort(w.cloud.EchoAddr)
	appendConfig(t, w.dir, fmt.Sprintf(`
  - name: nio
    type: java
    java: {mainClass: NioProbe, classpath: [%s], args: ["http://%s:%s/", "%s:%s"]}
    interconnect: {enabled: true, proxy: bastion}
`, dir, w.cloud.HTTPName, httpPort, w.cloud.DBName, echoPort))
	out, err := tetherCmd(ctxT(t), "launch", "--workspace", w.dir, "nio").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "httpclient: "+w.cloud.HTTPBody) || !strings.Contains(string(out), "channel: nio") {
		t.Fatalf("NIO through the agent: %v\n%s", err, out)
	}
}
