package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/client"
	"github.com/tether-dev/tether/internal/syncbuf"
	"github.com/tether-dev/tether/protocol"
)

const loopJava = `public class Loop {
    public static void main(String[] args) throws Exception {
        for (int i = 0; ; i++) {
            int answer = 40 + (i % 3);
            tick(answer);
            Thread.sleep(50);
        }
    }
    static void tick(int v) {}
}
`

func compileLoop(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "Loop.java")
	if err := os.WriteFile(src, []byte(loopJava), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("javac", "-g", "-d", dir, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	return dir
}

// startVPCJava runs Loop in the vpc namespace with JDWP on its vpc address.
func startVPCJava(t *testing.T, w *cloudWS, classes string, port int) {
	t.Helper()
	addr := net.JoinHostPort(w.cloud.ServiceIP, fmt.Sprint(port))
	cmd := exec.Command("ip", "netns", "exec", w.cloud.VPCNS, "java",
		"-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address="+addr, "-cp", classes, "Loop")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.Contains(line, "Listening for transport dt_socket") {
		t.Fatalf("JVM in vpc: %q %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
}

// jdbBreak attaches jdb to addr, stops at Loop:5 and prints the local
// variable; it returns jdb's output.
func jdbBreak(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "jdb", "-attach", addr)
	in, _ := cmd.StdinPipe()
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitFor := func(s string) {
		for !strings.Contains(out.String(), s) {
			if ctx.Err() != nil {
				t.Fatalf("jdb: no %q in:\n%s", s, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("Initializing jdb")
	time.Sleep(500 * time.Millisecond) // TESTING.md: give jdb a moment after attach
	fmt.Fprintln(in, "stop at Loop:5")
	waitFor("Breakpoint hit")
	waitFor("main[1]") // the prompt: the thread is suspended at the breakpoint
	fmt.Fprintln(in, "print answer")
	waitFor("answer = ")
	fmt.Fprintln(in, "clear Loop:5")
	fmt.Fprintln(in, "cont")
	fmt.Fprintln(in, "quit")
	_ = in.Close()
	_ = cmd.Wait()
	return out.String()
}

// TestDebugForwardJDWP: IntelliJ's "remote debug via proxy" — jdb attaches
// through a forwarded loopback port to a JVM inside the private network,
// via debug/forward and via a remoteDebug run configuration.
func TestDebugForwardJDWP(t *testing.T) {
	w := startCloudWS(t, true)
	classes := compileLoop(t)
	startVPCJava(t, w, classes, 5005)

	p := startServe(t, "--workspace", w.dir)
	initialize(t, p.Client, map[string]any{})
	ctx := ctxT(t)
	var fwd protocol.DebugForwardResult
	if err := p.Call(ctx, "debug/forward", map[string]any{"proxy": "bastion", "host": w.cloud.ServiceIP, "port": 5005}, &fwd); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(fwd.LocalAddress, "127.0.0.1:") {
		t.Fatalf("forward = %+v", fwd)
	}
	out := jdbBreak(t, fwd.LocalAddress)
	if !strings.Contains(out, "answer = 4") {
		t.Fatalf("jdb output:\n%s", out)
	}
	if err := p.Call(ctx, "debug/unforward", map[string]any{"forwardId": fwd.ForwardID}, nil); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", fwd.LocalAddress, time.Second); err == nil {
		c.Close()
		t.Fatal("forward still listening after debug/unforward")
	}
	expectCode(t, p.Call(ctx, "debug/forward", map[string]any{"proxy": "bastion", "host": "x", "port": 0}, nil), protocol.CodeInvalidParams, "port")

	// Headless: a remoteDebug configuration held by tether launch.
	cfg := map[string]any{"name": "remote", "type": "remoteDebug",
		"remoteDebug": map[string]any{"proxy": "bastion", "host": w.cloud.ServiceIP, "port": 5005}}
	if err := p.Call(ctx, "runConfig/save", map[string]any{"config": cfg}, nil); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := tetherCmd(lctx, "launch", "--workspace", w.dir, "remote")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	addr := startForDebugAddress(t, cmd)
	if out := jdbBreak(t, addr); !strings.Contains(out, "answer = 4") {
		t.Fatalf("jdb through tether launch:\n%s", out)
	}
	cancel()       // Ctrl-C
	_ = cmd.Wait() // reports the cancel; the exit code is what counts
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("tether launch after Ctrl-C: exit code %d", code)
	}
}

// TestLaunchDebugReady: launch/start {debug: true} on a java configuration
// injects JDWP on loopback and reports debugReady; jdb attaches there.
func TestLaunchDebugReady(t *testing.T) {
	requireJava(t)
	classes := compileLoop(t)
	ws := t.TempDir()
	cfg := fmt.Sprintf("version: 1\nconfigurations:\n  - name: loop\n    type: java\n    java: {mainClass: Loop, classpath: [%s]}\n", classes)
	if err := os.WriteFile(filepath.Join(ws, "tether.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "--workspace", ws)
	initialize(t, p.Client, map[string]any{})
	ctx := ctxT(t)
	var prep protocol.LaunchPrepareResult
	if err := p.Call(ctx, "launch/prepare", map[string]any{"config": "loop", "debug": true}, &prep); err != nil {
		t.Fatal(err)
	}
	if len(prep.VMArgs) != 1 || !strings.Contains(prep.VMArgs[0], "address="+prep.DebugAddress) {
		t.Fatalf("prepare = %+v", prep)
	}
	var st protocol.LaunchStartResult
	if err := p.Call(ctx, "launch/start", map[string]any{"config": "loop", "debug": true}, &st); err != nil {
		t.Fatal(err)
	}
	m, err := p.WaitNotification(ctx, func(m client.Message) bool {
		return m.Method == "launch/state" && strings.Contains(string(m.Params), `"debugReady"`)
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := between(string(m.Params), `"debugAddress":"`, `"`)
	if out := jdbBreak(t, addr); !strings.Contains(out, "answer = 4") {
		t.Fatalf("jdb:\n%s", out)
	}
	if err := p.Call(ctx, "launch/stop", map[string]any{"launchId": st.LaunchID}, nil); err != nil {
		t.Fatal(err)
	}
}

func between(s, a, b string) string {
	_, rest, _ := strings.Cut(s, a)
	v, _, _ := strings.Cut(rest, b)
	return v
}

// startForDebugAddress starts `tether launch` and returns the address it
// prints for the debugger.
func startForDebugAddress(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "tether: debugger can attach at "); ok {
			addr = a
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if addr == "" {
		t.Fatal("tether launch printed no debug address")
	}
	return addr
}
