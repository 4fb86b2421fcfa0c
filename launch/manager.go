package launch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/javaagent"
	"github.com/tether-dev/tether/plugins/docker"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

// StopGrace is how long an app gets after SIGTERM before SIGKILL.
const StopGrace = 5 * time.Second

// ErrUnknownSession is returned for a session or launch id that is not open.
var ErrUnknownSession = errors.New("no such session")

// Manager owns the sessions of one client (an IDE connection, or the CLI):
// prepared interconnects and running launches. CloseAll ends them all, so
// nothing outlives the client.
type Manager struct {
	Workspace *workspace.Workspace
	Hooks     Hooks

	calls *callLog // the calls of all sessions, also of ended ones

	mu       sync.Mutex
	closed   bool
	prepared map[string]*Interconnect
	plain    map[string]bool // sessions prepared with interconnect off
	launches map[string]*Launch
	forwards map[string]*Forward
}

// NewManager returns a manager for one client.
func NewManager(ws *workspace.Workspace, h Hooks) *Manager {
	return &Manager{Workspace: ws, Hooks: h, calls: newCallLog(h.OnCall), prepared: map[string]*Interconnect{}, plain: map[string]bool{}, launches: map[string]*Launch{},
		forwards: map[string]*Forward{}}
}

func newID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// resolve loads a run configuration and its proxy.
func (m *Manager) resolve(name string) (*workspace.RunConfig, *workspace.Proxy, error) {
	s, err := m.Workspace.Load()
	if err != nil {
		return nil, nil, err
	}
	rc, ok := s.File.Config(name)
	if !ok {
		return nil, nil, fmt.Errorf("no run configuration named %q: %w", name, workspace.ErrNotFound)
	}
	if ps := s.File.ValidateConfig(rc); len(ps) > 0 {
		return nil, nil, ps
	}
	if rc.Interconnect == nil || !rc.Interconnect.Enabled {
		return rc, nil, nil
	}
	px, _ := s.File.Proxy(rc.Interconnect.Proxy)
	if ps := workspace.ValidateProxy(px); len(ps) > 0 {
		return nil, nil, fmt.Errorf("proxy %s: %w", px.Name, ps)
	}
	return rc, px, nil
}

// open opens the interconnect of rc (nil when it is off) with its exposed
// ports.
func (m *Manager) open(ctx context.Context, rc *workspace.RunConfig, px *workspace.Proxy, id string) (*Interconnect, error) {
	if px == nil {
		return nil, nil
	}
	h := m.Hooks
	h.callSink = m.calls.sink(id)
	if l := rc.Interconnect.Lane; l != nil {
		h.lane = l.Name
	}
	ic, err := OpenInterconnect(ctx, m.Workspace.Dir, px, id, h)
	if err != nil {
		return nil, err
	}
	if err := ic.Expose(ctx, px, rc.Interconnect.Expose, m.Hooks.logger()); err != nil {
		ic.Close()
		return nil, err
	}
	if l := rc.Interconnect.Lane; l != nil {
		progress.Report(ctx, "setting up lane %s", l.Name)
		if ic.lane, err = startLane(ctx, m.Workspace.Dir, ic, px, l, h); err != nil {
			ic.Close()
			return nil, err
		}
	}
	if useJavaAgent(rc) {
		if err := ic.StartJavaAgent(ctx, px, m.Hooks.logger()); err != nil {
			ic.Close()
			return nil, err
		}
	}
	return ic, nil
}

// Prepare opens the interconnect of a configuration for an IDE that starts
// the process itself, and returns what to add to it. The session lives
// until Release or CloseAll.
func (m *Manager) Prepare(ctx context.Context, name string, debug bool) (protocol.LaunchPrepareResult, error) {
	rc, px, err := m.resolve(name)
	if err != nil {
		return protocol.LaunchPrepareResult{}, err
	}
	if rc.Type == workspace.TypeDocker || rc.Type == workspace.TypeRemoteDebug {
		return protocol.LaunchPrepareResult{}, fmt.Errorf("%s configurations are started by launch/start, not prepared: %w", rc.Type, ErrNotSupported)
	}
	id := newID("s-")
	ic, err := m.open(ctx, rc, px, id)
	if err != nil {
		return protocol.LaunchPrepareResult{}, err
	}
	inj, err := Inject(rc, ic, debug)
	if err != nil {
		closeIC(ic)
		return protocol.LaunchPrepareResult{}, err
	}
	if !m.keep(func() {
		if ic != nil {
			m.prepared[id] = ic
		} else {
			m.plain[id] = true
		}
	}) {
		closeIC(ic)
		return protocol.LaunchPrepareResult{}, errors.New("the client is going away")
	}
	return protocol.LaunchPrepareResult{SessionID: id, VMArgs: inj.VMArgs, Env: inj.Env, DebugAddress: inj.DebugAddress,
		Exposed: ic.Exposed()}, nil
}

// keep runs add under the lock unless the manager is closed.
func (m *Manager) keep(add func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	add()
	return true
}

// Release closes a prepared session.
func (m *Manager) Release(id string) error {
	m.mu.Lock()
	ic := m.prepared[id]
	plain := m.plain[id]
	delete(m.prepared, id)
	delete(m.plain, id)
	m.mu.Unlock()
	if ic == nil {
		if plain {
			return nil // prepared with interconnect off: nothing to close
		}
		return fmt.Errorf("sessionId %q: no such prepared session (already released, or never prepared by this client): %w", id, ErrUnknownSession)
	}
	return ic.Close()
}

// Launch is an app started by the backend, or (remoteDebug) a debug port
// forward held open.
type Launch struct {
	ID       string
	Config   string
	ic       *Interconnect
	proc     *Process
	fwd      *Forward
	ctr      *docker.Session
	exitCode int // containers
	done     chan struct{}
	summary  channel.Summary
}

// Done is closed when the app has exited and its interconnect is closed.
func (l *Launch) Done() <-chan struct{} { return l.done }

// ExitCode is valid after Done.
func (l *Launch) ExitCode() int {
	if l.proc == nil {
		return l.exitCode
	}
	return l.proc.ExitCode()
}

// Summary is the connection summary, valid after Done.
func (l *Launch) Summary() channel.Summary { return l.summary }

// Interconnect is the launch's interconnect, nil when it is off.
func (l *Launch) Interconnect() *Interconnect { return l.ic }

// Stop stops the app (SIGTERM to its process group, SIGKILL after grace),
// or closes the forward.
func (l *Launch) Stop() {
	if l.ic != nil {
		l.ic.lane.Stop() // tagged requests go to base before the app stops
	}
	switch {
	case l.fwd != nil:
		l.fwd.Close()
	case l.ctr != nil:
		_ = l.ctr.Stop(context.Background())
	default:
		l.proc.Stop(StopGrace)
	}
}

// Start opens the interconnect, starts the app and returns once it runs.
// Failures before that are returned (and reported as state failed).
func (m *Manager) Start(ctx context.Context, name string, debug bool) (*Launch, error) {
	id := newID("l-")
	state := func(p protocol.LaunchStateParams) {
		p.LaunchID = id
		if m.Hooks.OnLaunchState != nil {
			m.Hooks.OnLaunchState(p)
		}
	}
	fail := func(err error) (*Launch, error) {
		state(protocol.LaunchStateParams{State: protocol.StateFailed, Message: err.Error()})
		return nil, err
	}
	state(protocol.LaunchStateParams{State: protocol.StateStarting})
	rc, px, err := m.resolve(name)
	if err != nil {
		return fail(err)
	}
	if rc.Type == workspace.TypeRemoteDebug {
		l, err := m.startForward(ctx, id, rc, state)
		if err != nil {
			return fail(err)
		}
		return l, nil
	}
	if rc.Type == workspace.TypeDocker {
		l, err := m.startDocker(ctx, id, rc, px, debug, state)
		if err != nil {
			return fail(err)
		}
		return l, nil
	}
	if px != nil {
		state(protocol.LaunchStateParams{State: protocol.StateConnecting})
	}
	ic, err := m.open(ctx, rc, px, id)
	if err != nil {
		return fail(err)
	}
	inj, err := Inject(rc, ic, debug)
	if err != nil {
		closeIC(ic)
		return fail(err)
	}
	spec, err := Command(m.Workspace.Dir, rc, inj)
	if err != nil {
		closeIC(ic)
		return fail(err)
	}
	progress.Report(ctx, "starting %s", spec.Argv[0])
	l := &Launch{ID: id, Config: name, ic: ic, done: make(chan struct{})}
	var debugOnce sync.Once
	out := func(stream string, data []byte) {
		if m.Hooks.OnOutput != nil {
			m.Hooks.OnOutput(id, stream, data)
		}
		if inj.DebugAddress != "" && jdwpListening.Match(data) {
			debugOnce.Do(func() {
				state(protocol.LaunchStateParams{State: protocol.StateDebugReady, DebugAddress: inj.DebugAddress})
			})
		}
	}
	proc, err := StartProcess(spec, out)
	if err != nil {
		closeIC(ic)
		return fail(err)
	}
	l.proc = proc
	if !m.keep(func() { m.launches[id] = l }) {
		proc.Stop(StopGrace)
		closeIC(ic)
		return fail(errors.New("the client is going away"))
	}
	m.Hooks.logger().Info("app started", "launch", id, "config", name, "pid", proc.Pid())
	state(protocol.LaunchStateParams{State: protocol.StateRunning, Exposed: ic.Exposed()})
	go func() {
		<-proc.Done()
		if ic != nil {
			closeIC(ic) // waits for the app's last connections to be logged
			l.summary = ic.Summary()
		}
		m.mu.Lock()
		delete(m.launches, id)
		m.mu.Unlock()
		code := proc.ExitCode()
		state(protocol.LaunchStateParams{State: protocol.StateExited, ExitCode: &code})
		close(l.done)
	}()
	return l, nil
}

// startForward holds a remoteDebug configuration's forward as a launch.
func (m *Manager) startForward(ctx context.Context, id string, rc *workspace.RunConfig, state func(protocol.LaunchStateParams)) (*Launch, error) {
	d := rc.RemoteDebug
	s, err := m.Workspace.Load()
	if err != nil {
		return nil, err
	}
	px, ok := s.File.Proxy(d.Proxy)
	if !ok {
		return nil, fmt.Errorf("no proxy named %q: %w", d.Proxy, workspace.ErrNotFound)
	}
	state(protocol.LaunchStateParams{State: protocol.StateConnecting})
	f, err := OpenForward(ctx, m.Workspace.Dir, px, d.Host, d.Port, d.LocalPort, m.Hooks)
	if err != nil {
		return nil, err
	}
	l := &Launch{ID: id, Config: rc.Name, fwd: f, done: make(chan struct{})}
	if !m.keep(func() { m.launches[id] = l }) {
		f.Close()
		return nil, errors.New("the client is going away")
	}
	state(protocol.LaunchStateParams{State: protocol.StateRunning})
	state(protocol.LaunchStateParams{State: protocol.StateDebugReady, DebugAddress: f.LocalAddress})
	go func() {
		<-f.Done()
		m.mu.Lock()
		delete(m.launches, id)
		m.mu.Unlock()
		code := 0
		state(protocol.LaunchStateParams{State: protocol.StateExited, ExitCode: &code})
		close(l.done)
	}()
	return l, nil
}

// Stop stops a launch and waits for it to end.
func (m *Manager) Stop(id string) error {
	m.mu.Lock()
	l := m.launches[id]
	m.mu.Unlock()
	if l == nil {
		return fmt.Errorf("launch %q: %w", id, ErrUnknownSession)
	}
	l.Stop()
	<-l.done
	return nil
}

// Status lists the tunnels of all sessions.
func (m *Manager) Status() []protocol.TunnelStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []protocol.TunnelStatus{}
	for _, ic := range m.prepared {
		out = append(out, ic.Status())
	}
	for _, l := range m.launches {
		if l.ic != nil {
			out = append(out, l.ic.Status())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SessionID < out[j].SessionID })
	return out
}

// CloseAll stops every launch and closes every session; the manager takes
// no new ones.
func (m *Manager) CloseAll() {
	m.mu.Lock()
	m.closed = true
	prepared, launches, forwards := m.prepared, m.launches, m.forwards
	m.prepared, m.launches, m.forwards = map[string]*Interconnect{}, map[string]*Launch{}, map[string]*Forward{}
	m.mu.Unlock()
	for _, f := range forwards {
		f.Close()
	}
	var wg sync.WaitGroup
	for _, l := range launches {
		wg.Add(1)
		go func() { defer wg.Done(); l.Stop(); <-l.done }()
	}
	for _, ic := range prepared {
		wg.Add(1)
		go func() { defer wg.Done(); _ = ic.Close() }()
	}
	wg.Wait()
	m.calls.close()
}

func closeIC(ic *Interconnect) {
	if ic != nil {
		_ = ic.Close()
	}
}

// useJavaAgent: java configurations use Tether's Java agent unless they
// turn it off, when this build embeds it.
func useJavaAgent(rc *workspace.RunConfig) bool {
	if rc.Type != workspace.TypeJava || !javaagent.Available() {
		return false
	}
	return rc.Java == nil || rc.Java.Agent == nil || *rc.Java.Agent
}
