package launch

import (
	"context"
	"net"
	"regexp"
	"sort"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/workspace"
)

// What the local-process runtimes (java, exec) share: what Tether adds to
// the app, and the app as a supervised process (process.go).

// Injected is what Tether adds to an app: JVM args for java, environment
// variables for any type.
type Injected struct {
	VMArgs []string
	Env    map[string]string
	// DebugAddress is where a debugger attaches (java with debug).
	DebugAddress string
}

// settings are what the session asks of the app besides its proxy
// settings: the lane's and every exposed port's registry settings, as JVM
// system properties (java, in order) and as environment variables (other
// types). None without an interconnect.
func (ic *Interconnect) settings() (vmArgs []string, env map[string]string) {
	if ic == nil {
		return nil, nil
	}
	add := func(props, e map[string]string) {
		for _, k := range sortedKeys(props) {
			vmArgs = append(vmArgs, "-D"+k+"="+props[k])
		}
		for k, v := range e {
			if env == nil {
				env = map[string]string{}
			}
			env[k] = v
		}
	}
	if ic.lane != nil {
		add(laneArgs(ic.lane.name))
	}
	for _, ex := range ic.Exposed() {
		add(registryArgs(ex.Registry, ex.Address))
	}
	return vmArgs, env
}

// processSpec is the process of rc with argv: in rc's cwd (relative to
// the workspace dir), with the backend's environment plus rc's and inj's.
func processSpec(dir string, rc *workspace.RunConfig, argv []string, inj Injected) Spec {
	spec := Spec{Dir: dir, Argv: argv, Env: environ(rc.Env, inj.Env)}
	if rc.Cwd != "" {
		spec.Dir = resolvePath(dir, rc.Cwd)
	}
	return spec
}

// startProcess starts spec as the launch's app; with a debug address the
// JVM's JDWP line reports debugReady.
func startProcess(ctx context.Context, s *starting, spec Spec, debugAddress string) (App, error) {
	progress.Report(ctx, "starting %s", spec.Argv[0])
	var addr func() string
	if debugAddress != "" {
		addr = func() string { return debugAddress }
	}
	proc, err := StartProcess(spec, s.output(addr))
	if err != nil {
		return nil, errcat.Environment.Wrap(err)
	}
	s.m.Hooks.logger().Info("app started", "launch", s.id, "config", s.rc.Name, "pid", proc.Pid())
	return processApp{proc}, nil
}

// processApp is a local process as a launch's App.
type processApp struct{ p *Process }

func (a processApp) Wait() int {
	<-a.p.Done()
	return a.p.ExitCode()
}

func (a processApp) Stop() { a.p.Stop(StopGrace) }

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, errcat.Environment.Wrap(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// jdwpListening matches the JVM's line once JDWP accepts a debugger.
var jdwpListening = regexp.MustCompile(`Listening for transport dt_socket at address: *(\S+)`)

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
