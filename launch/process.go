package launch

import (
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/errcat"
)

// Spec is a process to run.
type Spec struct {
	Argv []string
	Env  []string // the whole environment
	Dir  string
}

// Process is an app started in its own process group, so that stopping it
// stops its children too.
type Process struct {
	cmd      *exec.Cmd
	done     chan struct{}
	exitCode int
	err      error
	stopOnce sync.Once
	// supervised: cmd is the app's supervisor, which stops the app's tree
	// itself (SIGTERM, grace, SIGKILL).
	supervised bool
}

// StartProcess starts spec; out receives stdout and stderr chunks as they
// come (stream "stdout" or "stderr"). In the tether binary the app runs
// under a supervisor (supervise.go) that takes its whole process tree down
// when the backend dies, even by SIGKILL; elsewhere it runs in its own
// process group with a parent-death signal.
func StartProcess(spec Spec, out func(stream string, data []byte)) (*Process, error) {
	if len(spec.Argv) == 0 {
		return nil, errcat.Config.New("nothing to run: the configuration gives no command")
	}
	var cmd *exec.Cmd
	var lifeline *os.File
	if supervisorOK {
		path, err := exec.LookPath(spec.Argv[0])
		if err != nil {
			return nil, errcat.Config.Newf("start %s: %w (check the command or java settings of the run configuration, and PATH)", spec.Argv[0], err)
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, errcat.Environment.Wrap(err)
		}
		defer r.Close()
		lifeline = w
		args := append([]string{superviseArg, StopGrace.String(), path}, spec.Argv...)
		cmd = exec.Command("/proc/self/exe", args...)
		cmd.Args[0] = os.Args[0]
		cmd.ExtraFiles = []*os.File{r} // fd 3: EOF when the backend is gone
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	} else {
		cmd = exec.Command(spec.Argv[0], spec.Argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	cmd.Env = spec.Env
	cmd.Dir = spec.Dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		closeFile(lifeline)
		return nil, errcat.Environment.Wrap(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		closeFile(lifeline)
		return nil, errcat.Environment.Wrap(err)
	}
	// Pdeathsig fires when the starting thread exits; keep it for the start.
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		closeFile(lifeline)
		return nil, errcat.Environment.Newf("start %s: %w", spec.Argv[0], err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{}), supervised: lifeline != nil}
	var wg sync.WaitGroup
	pump := func(name string, r io.Reader) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 && out != nil {
				out(name, append([]byte(nil), buf[:n]...))
			}
			if err != nil {
				return
			}
		}
	}
	wg.Add(2)
	go pump("stdout", stdout)
	go pump("stderr", stderr)
	go func() {
		state, err := cmd.Process.Wait()
		// Whatever the app left running in its group goes with it (the
		// supervisor has already stopped the rest of the tree).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		closeFile(lifeline)
		pumped := make(chan struct{})
		go func() { wg.Wait(); close(pumped) }()
		select {
		case <-pumped:
		case <-time.After(5 * time.Second):
			// Something that escaped still holds the pipes: stop reading.
		}
		stdout.Close()
		stderr.Close()
		p.err = err
		p.exitCode = -1
		if state != nil {
			p.exitCode = state.ExitCode()
			if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.exitCode = 128 + int(ws.Signal())
			}
		}
		close(p.done)
	}()
	return p, nil
}

func closeFile(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// Pid is the process id of the app, or of its supervisor (also the process
// group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and its output is read.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is valid after Done: the exit code, or 128+signal.
func (p *Process) ExitCode() int { return p.exitCode }

// Stop sends SIGTERM to the app's process tree, then SIGKILL after grace.
func (p *Process) Stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		pid := p.cmd.Process.Pid
		if p.supervised {
			// The supervisor signals the whole tree with its own grace
			// (StopGrace); it only needs killing if it hangs.
			_ = syscall.Kill(pid, syscall.SIGTERM)
			grace = max(grace, StopGrace) + 5*time.Second
		} else {
			_ = syscall.Kill(-pid, syscall.SIGTERM)
		}
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.done
		}
	})
}

// environ merges extra variables into the backend's environment.
func environ(extra ...map[string]string) []string {
	env := os.Environ()
	idx := map[string]int{}
	for i, kv := range env {
		for j := 0; j < len(kv); j++ {
			if kv[j] == '=' {
				idx[kv[:j]] = i
				break
			}
		}
	}
	for _, m := range extra {
		for k, v := range m {
			if i, ok := idx[k]; ok {
				env[i] = k + "=" + v
			} else {
				idx[k] = len(env)
				env = append(env, k+"="+v)
			}
		}
	}
	return env
}
