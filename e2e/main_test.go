package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-dev/tether/client"
	"github.com/tether-dev/tether/internal/k8stestbed"
	"github.com/tether-dev/tether/internal/syncbuf"
)

var (
	raceFlag  []string
	tetherBin string
	agentBin  string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tether-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tetherBin = filepath.Join(dir, "tether")
	args := append([]string{"build", "-tags", "tethertest", "-o", tetherBin}, raceFlag...)
	cmd := exec.Command("go", append(args, "../cmd/tether")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tether:", err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "tether-agent")
	cmd = exec.Command("go", "build", "-o", agentBin, "../cmd/tether-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // it runs in FROM scratch images
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tether-agent:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := k8stestbed.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "k8s testbed tear-down:", err)
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// tetherProc is a running tether subcommand with pipes on its stdio; it is
// killed (and its stderr shown if the test failed) in cleanup.
type tetherProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr *syncbuf.Buffer
	exited chan struct{}
}

func startTether(t *testing.T, args ...string) *tetherProc {
	t.Helper()
	cmd := exec.Command(tetherBin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &tetherProc{cmd: cmd, stdin: stdin, stdout: stdout, stderr: &syncbuf.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("tether %s stderr:\n%s", args[0], tail(p.stderr.String(), 4000))
		}
	})
	return p
}

// proc is a running `tether serve` on stdio.
type proc struct {
	*client.Client
	*tetherProc
}

// startServe starts `tether serve` with args and a client on its stdio.
func startServe(t *testing.T, args ...string) *proc {
	t.Helper()
	tp := startTether(t, append([]string{"serve"}, args...)...)
	return &proc{Client: client.New(tp.stdout, tp.stdin, tp.stdin), tetherProc: tp}
}

// exitCode waits for the process to exit.
func (p *tetherProc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(10 * time.Second):
		t.Fatal("tether did not exit")
		return -1
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var _ io.Writer = (*syncbuf.Buffer)(nil)
