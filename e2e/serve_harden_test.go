package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/client"
	"github.com/tether-dev/tether/internal/syncbuf"
	"github.com/tether-dev/tether/protocol"
)

// startListening runs `sh -c 'ulimit -n NOFILE; exec tether serve --listen
// spec'` (nofile 0: no limit set) and returns the process and the address.
func startListening(t *testing.T, nofile int, ws string, args ...string) (*exec.Cmd, string, *syncbuf.Buffer) {
	t.Helper()
	script := `exec "$@"`
	if nofile > 0 {
		script = fmt.Sprintf("ulimit -n %d && exec \"$@\"", nofile)
	}
	cmd := exec.Command("sh", append([]string{"-c", script, "sh", tetherBin, "serve", "--workspace", ws, "--output", "json"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("tether serve stderr:\n%s", tail(stderr.String(), 4000))
		}
	})
	var info map[string]string
	if err := json.NewDecoder(bufio.NewReader(out)).Decode(&info); err != nil {
		t.Fatal(err)
	}
	return cmd, info["address"], stderr
}

func alive(cmd *exec.Cmd) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return false
	}
	// A zombie (state Z) has exited.
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestServeSurvivesEMFILE: clients that exhaust the backend's file
// descriptors must not end it; it serves again once they are gone.
func TestServeSurvivesEMFILE(t *testing.T) {
	ws := t.TempDir()
	sock := filepath.Join(t.TempDir(), "s.sock")
	cmd, addr, stderr := startListening(t, 40, ws, "--listen", "unix:"+sock)
	var conns []net.Conn
	for range 80 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			break // the backlog is full: enough
		}
		conns = append(conns, c)
	}
	t.Logf("%d connections open", len(conns))
	// Wait until the accept loop has run into EMFILE (it logs each failure).
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(stderr.String(), "too many open files"); time.Sleep(50 * time.Millisecond) {
		if !alive(cmd) {
			t.Fatal("tether serve exited when it ran out of file descriptors")
		}
		if time.Now().After(deadline) {
			t.Fatal("tether serve never ran out of file descriptors (no \"accept failed\" logged)")
		}
	}
	time.Sleep(200 * time.Millisecond)
	if !alive(cmd) {
		t.Fatal("tether serve exited when it ran out of file descriptors")
	}
	for _, c := range conns {
		c.Close()
	}
	// Once the descriptors are free, a client is served again.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if !alive(cmd) {
			t.Fatal("tether serve exited")
		}
		c := dialClient(t, addr)
		var res protocol.InitializeResult
		err := c.Call(ctxT(t), "initialize", map[string]any{}, &res)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no client served after the flood: %v", err)
		}
	}
}

// TestUnauthenticatedMemory: clients without the token that announce huge
// messages and send a few MiB must not make the backend allocate them.
func TestUnauthenticatedMemory(t *testing.T) {
	ws := t.TempDir()
	cmd, addr, _ := startListening(t, 0, ws, "--listen", "tcp:127.0.0.1:0", "--token-file", filepath.Join(t.TempDir(), "tok"))
	_, a, _ := strings.Cut(addr, ":")
	base := rssKiB(t, cmd.Process.Pid)
	chunk := []byte(strings.Repeat(" ", 1<<20))
	const clients, mib = 40, 8
	for range clients {
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := fmt.Fprintf(c, "Content-Length: %d\r\n\r\n", 60<<20); err != nil {
			t.Fatal(err)
		}
		for range mib {
			if _, err := c.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every byte was accepted by the backend (written); its memory:
	time.Sleep(500 * time.Millisecond)
	rss := rssKiB(t, cmd.Process.Pid)
	t.Logf("RSS %d MiB before, %d MiB after %d clients announced 60 MiB and sent %d MiB each", base>>10, rss>>10, clients, mib)
	if rss-base > 100<<10 {
		t.Fatalf("RSS grew by %d MiB", (rss-base)>>10)
	}
}

// TestFailingNotificationOnStdio: a notification whose handler fails is
// logged, and the backend goes on.
func TestFailingNotificationOnStdio(t *testing.T) {
	p := startServe(t, "--workspace", t.TempDir())
	initialize(t, p.Client, map[string]any{})
	if err := p.Notify("interconnect/set", map[string]any{"bad": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitNotification(ctxT(t), func(m client.Message) bool {
		return m.Method == "window/logMessage" && strings.Contains(string(m.Params), "notification failed")
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctxT(t), "runConfig/list", map[string]any{}, nil); err != nil {
		t.Fatalf("after a failing notification: %v", err)
	}
}

// TestWorkspaceFileRefusals: what the IDE gets for files this build must
// not read or write.
func TestWorkspaceFileRefusals(t *testing.T) {
	// The probe's file: 1000 aliases to an anchor of 1000 fields (13 KB),
	// where the schema check and the decoder walk them.
	var bomb strings.Builder
	bomb.WriteString("version: 1\nconfigurations:\n  - name: a\n    type: exec\n    exec: {command: [x]}\n    env: &a {")
	for i := range 1000 {
		fmt.Fprintf(&bomb, "f%d: 1, ", i)
	}
	bomb.WriteString("}\n  - name: b\n    type: exec\n    exec:\n      command: [")
	for range 1000 {
		bomb.WriteString("*a, ")
	}
	bomb.WriteString("]\n")
	cfg := map[string]any{"name": "w", "type": "exec", "exec": map[string]any{"command": []string{"true"}}}
	for _, tc := range []struct {
		name, content   string
		listErr, saveIn string // "" when list succeeds
	}{
		{"alias bomb", bomb.String(), "tether.yaml:10: YAML aliases expand", "tether.yaml:10: YAML aliases expand"},
		{"version 2", "version: 2\n", "tether.yaml:1: version 2 is not supported", "version 2 is not supported"},
		{"top-level list", "- a\n- b\n", "", "tether.yaml:1: the top of the file must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := t.TempDir()
			if err := os.WriteFile(filepath.Join(ws, "tether.yaml"), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			p := startServe(t, "--workspace", ws)
			initialize(t, p.Client, map[string]any{})
			start := time.Now()
			err := p.Call(ctxT(t), "runConfig/list", map[string]any{}, nil)
			t.Logf("runConfig/list answered in %v: %v", time.Since(start), err)
			if tc.listErr == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				expectCode(t, err, protocol.CodeWorkspaceInvalid, tc.listErr)
			}
			expectCode(t, p.Call(ctxT(t), "runConfig/save", map[string]any{"config": cfg}, nil), protocol.CodeWorkspaceInvalid, tc.saveIn)
			if data, _ := os.ReadFile(filepath.Join(ws, "tether.yaml")); string(data) != tc.content {
				t.Fatal("the file was changed")
			}
		})
	}
}

// TestPermissionWarningReachesIDE: a workspace writable by others is
// reported to the client.
func TestPermissionWarningReachesIDE(t *testing.T) {
	ws := t.TempDir()
	if err := os.Chmod(ws, 0o777); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "--workspace", ws)
	initialize(t, p.Client, map[string]any{})
	if _, err := p.WaitNotification(ctxT(t), func(m client.Message) bool {
		return m.Method == "window/logMessage" && strings.Contains(string(m.Params), "writable by other users")
	}); err != nil {
		t.Fatal(err)
	}
}
