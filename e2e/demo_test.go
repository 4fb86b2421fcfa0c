package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/syncbuf"
)

// TestSandboxDemo is the README's main job: the sandbox proxy machine and
// the sample app launched through it.
func TestSandboxDemo(t *testing.T) {
	requireJava(t)
	ws := t.TempDir()
	classes := filepath.Join(ws, ".tether-sandbox", "classes")
	if out, err := exec.Command("javac", "--release", "11", "-d", classes, "../examples/sample-app/Sample.java").CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	agent := exec.Command(agentBin, "sandbox", "--workspace", ws)
	out, _ := agent.StdoutPipe()
	agent.Stderr = os.Stderr
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.Contains(line, "listening on 127.0.0.1:") {
		t.Fatalf("sandbox: %q %v", line, err)
	}
	ctx := ctxT(t)
	var stdout, stderr syncbuf.Buffer
	har := filepath.Join(ws, "calls.har")
	cmd := tetherCmd(ctx, "launch", "--workspace", ws, "sample", "--log-calls", "--har", har)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tether launch sample: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "hello from the private network") ||
		!strings.Contains(stderr.String(), "connections: 2 (2 through the tunnel") {
		t.Fatalf("demo output:\n%s\n%s", stdout.String(), stderr.String())
	}
	demoCalls(t, stderr.String(), har)
}
