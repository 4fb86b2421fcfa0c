package launch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

// StopGrace is how long an app gets after SIGTERM before SIGKILL.
const StopGrace = 5 * time.Second

// ErrUnknownSession is returned (wrapped, category user) for a session,
// launch or forward id that is not open.
var ErrUnknownSession = errors.New("no such session")

// ErrNotSupported is returned (wrapped) for things this build cannot do.
var ErrNotSupported = errors.New("not supported by this build")

// errGoingAway: the client closed while something of it was starting.
func errGoingAway() error { return errcat.Environment.New("the client is going away") }

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
	dap      *dapEndpoint // debug/dapServer, once asked for
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
		return nil, nil, errcat.User.Newf("no run configuration named %q: %w", name, workspace.ErrNotFound)
	}
	if ps := s.File.ValidateConfig(rc); len(ps) > 0 {
		return nil, nil, errcat.Config.Wrap(ps)
	}
	if rc.Interconnect == nil || !rc.Interconnect.Enabled {
		return rc, nil, nil
	}
	px, _ := s.File.Proxy(rc.Interconnect.Proxy)
	if ps := workspace.ValidateProxy(px); len(ps) > 0 {
		return nil, nil, errcat.Config.Newf("proxy %s: %w", px.Name, ps)
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
			return nil, errcat.Environment.Wrap(err)
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
	rt, err := runtimeOf(rc)
	if err != nil {
		return protocol.LaunchPrepareResult{}, err
	}
	p, ok := rt.(Preparer)
	if !ok {
		return protocol.LaunchPrepareResult{}, errcat.User.Newf("%s configurations are started by launch/start, not prepared: %w", rc.Type, ErrNotSupported)
	}
	id := newID("s-")
	ic, err := m.open(ctx, rc, px, id)
	if err != nil {
		return protocol.LaunchPrepareResult{}, err
	}
	inj, err := p.Prepare(ctx, rc, ic, debug)
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
		return protocol.LaunchPrepareResult{}, errGoingAway()
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
		return errcat.User.Newf("sessionId %q: no such prepared session (already released, or never prepared by this client): %w", id, ErrUnknownSession)
	}
	return errcat.Environment.Wrap(ic.Close())
}

// Start opens the interconnect, starts the app and returns once it runs.
// Failures before that are returned (and reported as state failed).
func (m *Manager) Start(ctx context.Context, name string, debug bool) (*Launch, error) {
	s := &starting{id: newID("l-"), debug: debug, m: m}
	fail := func(err error) (*Launch, error) {
		closeIC(s.ic)
		s.report(protocol.LaunchStateParams{State: protocol.StateFailed, Message: err.Error()})
		return nil, err
	}
	s.report(protocol.LaunchStateParams{State: protocol.StateStarting})
	var err error
	if s.rc, s.px, err = m.resolve(name); err != nil {
		return fail(err)
	}
	rt, err := runtimeOf(s.rc)
	if err != nil {
		return fail(err)
	}
	app, err := rt.Start(ctx, s)
	if err != nil {
		return fail(err)
	}
	l := &Launch{ID: s.id, Config: name, ic: s.ic, app: app, done: make(chan struct{})}
	if !m.keep(func() { m.launches[l.ID] = l }) {
		app.Stop()
		app.Wait()
		return fail(errGoingAway())
	}
	s.runs()
	go m.watch(l, s.report)
	return l, nil
}

// Stop stops a launch and waits for it to end.
func (m *Manager) Stop(id string) error {
	m.mu.Lock()
	l := m.launches[id]
	m.mu.Unlock()
	if l == nil {
		return errcat.User.Newf("launch %q: %w", id, ErrUnknownSession)
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
	wg.Go(m.closeDAP)
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
