package launch

import (
	"context"
	"sync"

	"github.com/tether-dev/tether/channel"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

// Runtime is where the app of a run configuration runs: one implementation
// per configuration type (runtime_java.go, runtime_exec.go,
// runtime_docker.go, runtime_remotedebug.go). A runtime registers itself in
// an init func; runtimeOf picks it by the configuration's type. The Manager
// composes it with the transport: it resolves the configuration, lets the
// runtime start the app (opening the interconnect through the transport
// when the runtime asks) and watches the app until it ends (Manager.watch).
type Runtime interface {
	// Type is the run configuration type, the name of its section in
	// tether.yaml.
	Type() string
	// Start starts the app of s.rc and returns it running. It opens the
	// interconnect with s.connect when it is ready for it (after its local
	// checks, so that a missing tool fails before a tunnel opens). On error
	// it has released what it took, except the interconnect, which the
	// Manager closes.
	Start(ctx context.Context, s *starting) (App, error)
}

// Preparer is a Runtime whose app the IDE may start itself
// (launch/prepare).
type Preparer interface {
	// Prepare returns what to add to the app; ic is the session's
	// interconnect, nil when it is off.
	Prepare(ctx context.Context, rc *workspace.RunConfig, ic *Interconnect, debug bool) (Injected, error)
}

// App is what a Runtime started: a process, a container, a forward held
// open.
type App interface {
	// Wait blocks until the app has ended, releases what it held and
	// returns its exit code.
	Wait() int
	// Stop asks the app to end (SIGTERM, then SIGKILL after StopGrace; a
	// forward closes). Wait returns once it has.
	Stop()
}

// runtimes holds the registered runtimes, by run configuration type.
var runtimes = registry[Runtime]{what: "runtime"}

// registerRuntime adds a runtime; called from init funcs.
func registerRuntime(r Runtime) { runtimes.add(r.Type(), r) }

// Runtimes lists the run configuration types this build can launch, sorted.
func Runtimes() []string { return runtimes.names() }

// runtimeOf returns the runtime of rc's type.
func runtimeOf(rc *workspace.RunConfig) (Runtime, error) {
	if r, ok := runtimes.m[rc.Type]; ok {
		return r, nil
	}
	return nil, errcat.Config.Newf("run configurations of type %q are %w", rc.Type, ErrNotSupported)
}

// Launch is an app started by the backend, or (remoteDebug) a debug port
// forward held open.
type Launch struct {
	ID     string
	Config string

	ic       *Interconnect
	app      App
	done     chan struct{}
	exitCode int             // valid after done
	summary  channel.Summary // valid after done
}

// Done is closed when the app has exited and its interconnect is closed.
func (l *Launch) Done() <-chan struct{} { return l.done }

// ExitCode is valid after Done.
func (l *Launch) ExitCode() int { return l.exitCode }

// Summary is the connection summary, valid after Done.
func (l *Launch) Summary() channel.Summary { return l.summary }

// Interconnect is the launch's interconnect, nil when it is off.
func (l *Launch) Interconnect() *Interconnect { return l.ic }

// Stop stops the app (SIGTERM to its process tree, SIGKILL after grace; a
// container likewise), or closes the forward.
func (l *Launch) Stop() {
	if l.ic != nil {
		l.ic.lane.Stop() // tagged requests go to base before the app stops
	}
	l.app.Stop()
}

// watch waits for the app of l to end, then closes its interconnect (which
// waits for the app's last connections to be logged), keeps the connection
// summary, forgets the launch and reports it exited. Every launch, of
// every runtime, ends here.
func (m *Manager) watch(l *Launch, report func(protocol.LaunchStateParams)) {
	code := l.app.Wait()
	if l.ic != nil {
		closeIC(l.ic)
		l.summary = l.ic.Summary()
	}
	m.mu.Lock()
	delete(m.launches, l.ID)
	m.mu.Unlock()
	l.exitCode = code
	report(protocol.LaunchStateParams{State: protocol.StateExited, ExitCode: &code})
	close(l.done)
}

// prepare opens the interconnect and returns what p adds to the app.
func (s *starting) prepare(ctx context.Context, p Preparer) (Injected, error) {
	ic, err := s.connect(ctx)
	if err != nil {
		return Injected{}, err
	}
	return p.Prepare(ctx, s.rc, ic, s.debug)
}

// starting is a launch being started, as its runtime sees it.
type starting struct {
	id    string
	rc    *workspace.RunConfig
	px    *workspace.Proxy // the interconnect's proxy; nil when it is off
	debug bool
	m     *Manager
	ic    *Interconnect // once connect opened it

	mu      sync.Mutex
	running bool
	ready   bool          // debugReady reported
	pending func() string // debugReady held until running
}

// report sends a launch state change to the hooks.
func (s *starting) report(p protocol.LaunchStateParams) {
	p.LaunchID = s.id
	if s.m.Hooks.OnLaunchState != nil {
		s.m.Hooks.OnLaunchState(p)
	}
}

// connect opens the configuration's interconnect (nil when it is off).
func (s *starting) connect(ctx context.Context) (*Interconnect, error) {
	if s.px == nil {
		return nil, nil
	}
	s.report(protocol.LaunchStateParams{State: protocol.StateConnecting})
	ic, err := s.m.open(ctx, s.rc, s.px, s.id)
	s.ic = ic
	return ic, err
}

// output returns what receives the app's output: the hooks and, with
// debugAddr, a watch for the JVM's JDWP line that reports debugReady.
func (s *starting) output(debugAddr func() string) func(stream string, data []byte) {
	return func(stream string, data []byte) {
		if s.m.Hooks.OnOutput != nil {
			s.m.Hooks.OnOutput(s.id, stream, data)
		}
		if debugAddr != nil && jdwpListening.Match(data) {
			s.debugReady(debugAddr)
		}
	}
}

// debugReady reports, once, that a debugger can attach at addr(); before
// the launch runs it is held until it does, so debugReady always follows
// running.
func (s *starting) debugReady(addr func() string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ready:
	case !s.running:
		s.pending = addr
	default:
		s.reportReady(addr)
	}
}

// reportReady reports debugReady; s.mu is held.
func (s *starting) reportReady(addr func() string) {
	s.ready = true
	s.report(protocol.LaunchStateParams{State: protocol.StateDebugReady, DebugAddress: addr()})
}

// runs reports the launch running, then a held debugReady.
func (s *starting) runs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = true
	s.report(protocol.LaunchStateParams{State: protocol.StateRunning, Exposed: s.ic.Exposed()})
	if s.pending != nil && !s.ready {
		s.reportReady(s.pending)
	}
}
