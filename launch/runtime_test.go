package launch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

func TestRegistries(t *testing.T) {
	if got, want := Runtimes(), []string{"docker", "exec", "java", "remoteDebug"}; !slices.Equal(got, want) {
		t.Errorf("Runtimes() = %v, want %v", got, want)
	}
	if got, want := Transports(), []string{"kubernetes", "ssh"}; !slices.Equal(got, want) {
		t.Errorf("Transports() = %v, want %v", got, want)
	}
	for _, typ := range Runtimes() {
		r, err := runtimeOf(&workspace.RunConfig{Type: typ})
		if err != nil || r.Type() != typ {
			t.Errorf("runtimeOf(%s) = %v, %v", typ, r, err)
		}
	}
	_, err := runtimeOf(&workspace.RunConfig{Name: "x", Type: "wasm"})
	if !errors.Is(err, ErrNotSupported) || errcat.Of(err) != errcat.Config {
		t.Errorf("runtimeOf(wasm) = %v (category %s), want ErrNotSupported, config", err, errcat.Of(err))
	}
	cases := []struct {
		px   workspace.Proxy
		want string
	}{
		{workspace.Proxy{Name: "s", SSH: &workspace.SSHProxy{Host: "h"}}, "ssh"},
		{workspace.Proxy{Name: "k", Kubernetes: &workspace.KubernetesProxy{}}, "kubernetes"},
	}
	for _, c := range cases {
		tr, err := transportOf(&c.px)
		if err != nil || tr.Kind() != c.want {
			t.Errorf("transportOf(%s) = %v, %v; want %s", c.px.Name, tr, err, c.want)
		}
	}
	if _, err := transportOf(&workspace.Proxy{Name: "none"}); errcat.Of(err) != errcat.Config {
		t.Errorf("transportOf(no section) = %v (category %s), want a config error", err, errcat.Of(err))
	}
	res := TestProxy(context.Background(), t.TempDir(), &workspace.Proxy{Name: "none"}, nil, "")
	if res.OK || len(res.Steps) != 1 || res.Steps[0].OK {
		t.Errorf("TestProxy(no section) = %+v, want one failed step", res)
	}
}

// fakeApp ends with code when stopped or released.
type fakeApp struct {
	code    int
	end     chan struct{}
	once    sync.Once
	stopped bool
}

func newFakeApp(code int) *fakeApp { return &fakeApp{code: code, end: make(chan struct{})} }

func (a *fakeApp) Wait() int { <-a.end; return a.code }
func (a *fakeApp) Stop()     { a.once.Do(func() { a.stopped = true; close(a.end) }) }

// states records launch states.
type states struct {
	mu   sync.Mutex
	list []protocol.LaunchStateParams
}

func (s *states) add(p protocol.LaunchStateParams) {
	s.mu.Lock()
	s.list = append(s.list, p)
	s.mu.Unlock()
}

func (s *states) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.list {
		out = append(out, p.State)
	}
	return out
}

func (s *states) last() protocol.LaunchStateParams {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.list[len(s.list)-1]
}

func TestWatch(t *testing.T) {
	var st states
	m := NewManager(&workspace.Workspace{Dir: t.TempDir()}, Hooks{OnLaunchState: st.add})
	t.Cleanup(m.CloseAll)
	app := newFakeApp(3)
	l := &Launch{ID: "l-1", app: app, done: make(chan struct{})}
	m.launches[l.ID] = l
	s := &starting{id: l.ID, m: m}
	go m.watch(l, s.report)
	select {
	case <-l.Done():
		t.Fatal("done before the app ended")
	case <-time.After(20 * time.Millisecond):
	}
	if err := m.Stop(l.ID); err != nil {
		t.Fatal(err)
	}
	if !app.stopped || l.ExitCode() != 3 {
		t.Fatalf("stopped %v, exit code %d", app.stopped, l.ExitCode())
	}
	if got := st.names(); !slices.Equal(got, []string{protocol.StateExited}) {
		t.Fatalf("states %v", got)
	}
	if p := st.last(); p.LaunchID != "l-1" || p.ExitCode == nil || *p.ExitCode != 3 {
		t.Fatalf("exited = %+v", p)
	}
	if err := m.Stop(l.ID); !errors.Is(err, ErrUnknownSession) || errcat.Of(err) != errcat.User {
		t.Fatalf("second Stop = %v (category %s), want ErrUnknownSession, user", err, errcat.Of(err))
	}
}

func TestDebugReadyFollowsRunning(t *testing.T) {
	var st states
	m := NewManager(&workspace.Workspace{Dir: t.TempDir()}, Hooks{OnLaunchState: st.add})
	t.Cleanup(m.CloseAll)
	s := &starting{id: "l-2", m: m}
	out := s.output(func() string { return "127.0.0.1:5005" })
	out("stdout", []byte("Listening for transport dt_socket at address: 5005\n"))
	if got := st.names(); len(got) != 0 {
		t.Fatalf("states before running: %v", got)
	}
	s.runs()
	out("stdout", []byte("Listening for transport dt_socket at address: 5005\n"))
	want := []string{protocol.StateRunning, protocol.StateDebugReady}
	if got := st.names(); !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	if p := st.last(); p.DebugAddress != "127.0.0.1:5005" {
		t.Fatalf("debugReady = %+v", p)
	}
}

func writeWorkspace(t *testing.T, content string) *workspace.Workspace {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, workspace.FileName), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return &workspace.Workspace{Dir: dir}
}

const testWorkspace = `version: 1
configurations:
  - name: three
    type: exec
    exec: {command: [sh, -c, "echo hi; exit 3"]}
  - name: box
    type: docker
    docker: {image: alpine}
`

// TestStartExec runs an exec configuration (interconnect off) through
// Start: runtime, app, watcher.
func TestStartExec(t *testing.T) {
	var st states
	var mu sync.Mutex
	var out []byte
	m := NewManager(writeWorkspace(t, testWorkspace), Hooks{OnLaunchState: st.add,
		OnOutput: func(_, _ string, data []byte) { mu.Lock(); out = append(out, data...); mu.Unlock() }})
	t.Cleanup(m.CloseAll)
	l, err := m.Start(context.Background(), "three", false)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the launch did not end")
	}
	if l.ExitCode() != 3 {
		t.Fatalf("exit code %d", l.ExitCode())
	}
	want := []string{protocol.StateStarting, protocol.StateRunning, protocol.StateExited}
	if got := st.names(); !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if string(out) != "hi\n" {
		t.Fatalf("output %q", out)
	}
}

func TestStartAndPrepareErrors(t *testing.T) {
	var st states
	m := NewManager(writeWorkspace(t, testWorkspace), Hooks{OnLaunchState: st.add})
	t.Cleanup(m.CloseAll)
	_, err := m.Start(context.Background(), "nope", false)
	if !errors.Is(err, workspace.ErrNotFound) || errcat.Of(err) != errcat.User {
		t.Errorf("Start(nope) = %v (category %s)", err, errcat.Of(err))
	}
	if p := st.last(); p.State != protocol.StateFailed || p.Message != err.Error() {
		t.Errorf("last state %+v", p)
	}
	_, err = m.Prepare(context.Background(), "box", false)
	if !errors.Is(err, ErrNotSupported) || errcat.Of(err) != errcat.User {
		t.Errorf("Prepare(docker) = %v (category %s)", err, errcat.Of(err))
	}
	res, err := m.Prepare(context.Background(), "three", false)
	if err != nil || res.SessionID == "" || len(res.Env) != 0 {
		t.Fatalf("Prepare(exec, interconnect off) = %+v, %v", res, err)
	}
	if err := m.Release(res.SessionID); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(res.SessionID); !errors.Is(err, ErrUnknownSession) || errcat.Of(err) != errcat.User {
		t.Errorf("second Release = %v (category %s)", err, errcat.Of(err))
	}
}
