package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/syncbuf"
	"github.com/tether-dev/tether/protocol"
)

// The app's process tree goes with the backend: a shell that puts a JVM and
// a sleep in a session of their own (as mvnw/gradlew wrappers and
// `sh -c 'java … &'` do) and a sleep of its own. Every process of the tree
// carries a marker in its environment, so the test finds them wherever they
// were re-parented to.

const hookJava = `import java.nio.file.*;
public class Hook {
  public static void main(String[] a) throws Exception {
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try { Files.writeString(Path.of(a[0]), "hook ran\n"); } catch (Exception e) {}
    }));
    System.out.println("java up");
    System.out.flush();
    Thread.sleep(600_000);
  }
}
`

type treeWS struct {
	dir    string
	marker string // TETHER_TREE_TEST=marker in every process of the tree
	hook   string // written by the JVM's shutdown hook
}

// treeWorkspace writes a workspace with an exec configuration "tree".
func treeWorkspace(t *testing.T) *treeWS {
	t.Helper()
	requireJava(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Hook.java"), []byte(hookJava), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("javac", "-d", dir, filepath.Join(dir, "Hook.java")).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	w := &treeWS{dir: dir, marker: fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()), hook: filepath.Join(dir, "hook.txt")}
	script := fmt.Sprintf(`setsid sh -c "sleep 600 & exec java -cp %s Hook %s" & sleep 600; wait`, dir, w.hook)
	yaml := fmt.Sprintf(`version: 1
configurations:
  - name: tree
    type: exec
    env: {TETHER_TREE_TEST: %q}
    exec: {command: [sh, -c, %q]}
`, w.marker, script)
	if err := os.WriteFile(filepath.Join(dir, "tether.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // whatever a failed test left
		for _, pid := range w.procs() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return w
}

// procs lists the processes that carry the marker.
func (w *treeWS) procs() []int {
	ents, _ := os.ReadDir("/proc")
	want := []byte("TETHER_TREE_TEST=" + w.marker + "\x00")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
				continue // a zombie is gone
			}
		}
		out = append(out, pid)
	}
	return out
}

func cmdlines(pids []int) string {
	var s []string
	for _, p := range pids {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		s = append(s, fmt.Sprintf("%d %s", p, strings.ReplaceAll(string(b), "\x00", " ")))
	}
	return strings.Join(s, "; ")
}

// waitTree waits until the tree has its n processes (sh, setsid'd sh
// replaced by java, two sleeps) and the JVM is up.
func (w *treeWS) waitTree(t *testing.T, javaUp func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(w.procs()) < 4 || !javaUp() {
		if time.Now().After(deadline) {
			t.Fatalf("the tree did not start: %s", cmdlines(w.procs()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitGone waits until no process of the tree is left and returns how long
// that took.
func (w *treeWS) waitGone(t *testing.T, what string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		left := w.procs()
		if len(left) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("%s: processes left after %v: %s", what, time.Since(start).Round(time.Millisecond), cmdlines(left))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *treeWS) hookRan(t *testing.T, what string) {
	t.Helper()
	if b, err := os.ReadFile(w.hook); err != nil || !strings.Contains(string(b), "hook ran") {
		t.Errorf("%s: the JVM's shutdown hook did not run (%v)", what, err)
	}
	os.Remove(w.hook)
}

// TestLaunchTreeGoesWithBackend: `tether launch` stopped by Ctrl-C, then
// killed with SIGKILL: each time every process of the app's tree goes, and
// the JVM gets SIGTERM first (its shutdown hook runs).
func TestLaunchTreeGoesWithBackend(t *testing.T) {
	w := treeWorkspace(t)
	for _, how := range []string{"ctrl-c", "kill -9"} {
		cmd := exec.Command(tetherBin, "launch", "--workspace", w.dir, "tree")
		stdout, err := cmd.StdoutPipe()
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
		up := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if sc.Text() == "java up" {
					close(up)
				}
			}
		}()
		w.waitTree(t, func() bool {
			select {
			case <-up:
				return true
			default:
				return false
			}
		})
		t.Logf("%s: tree %s", how, cmdlines(w.procs()))
		if how == "ctrl-c" {
			_ = cmd.Process.Signal(syscall.SIGINT)
		} else {
			_ = cmd.Process.Kill()
		}
		took := w.waitGone(t, how)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%s: tether launch did not exit", how)
		}
		t.Logf("%s: every process of the tree gone after %v", how, took.Round(time.Millisecond))
		w.hookRan(t, how)
		if t.Failed() {
			t.Logf("stderr: %s", stderr.String())
		}
	}
}

// TestServeTreeGoesWithBackend: an app started by launch/start is stopped
// with its tree by launch/stop (shutdown hook run), and with its tree when
// `tether serve` is killed with SIGKILL.
func TestServeTreeGoesWithBackend(t *testing.T) {
	w := treeWorkspace(t)
	p := startServe(t, "--workspace", w.dir)
	initialize(t, p.Client, map[string]any{})
	javaUp := func(id string) func() bool {
		return func() bool {
			for _, m := range p.Notifications() {
				if m.Method == "launch/output" && strings.Contains(string(m.Params), id) && strings.Contains(string(m.Params), "java up") {
					return true
				}
			}
			return false
		}
	}
	var st protocol.LaunchStartResult
	if err := p.Call(ctxT(t), "launch/start", map[string]any{"config": "tree"}, &st); err != nil {
		t.Fatal(err)
	}
	w.waitTree(t, javaUp(st.LaunchID))
	start := time.Now()
	if err := p.Call(ctxT(t), "launch/stop", map[string]any{"launchId": st.LaunchID}, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("launch/stop returned after %v", time.Since(start).Round(time.Millisecond))
	w.waitGone(t, "launch/stop")
	w.hookRan(t, "launch/stop")

	if err := p.Call(ctxT(t), "launch/start", map[string]any{"config": "tree"}, &st); err != nil {
		t.Fatal(err)
	}
	w.waitTree(t, javaUp(st.LaunchID))
	_ = p.cmd.Process.Kill()
	took := w.waitGone(t, "tether serve killed")
	t.Logf("serve SIGKILLed: every process of the tree gone after %v", took.Round(time.Millisecond))
	w.hookRan(t, "tether serve killed")
	p.exitCode(t)
}
