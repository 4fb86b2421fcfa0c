package launch

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The supervisor: every app the backend starts runs under a small process
// of its own — the tether binary re-executed as `tether __supervise` — so
// that the app's whole process tree goes when the backend goes, however it
// goes (Ctrl-C, launch/stop, kill -9, a crash):
//
//   - it is a child subreaper (PR_SET_CHILD_SUBREAPER): descendants that
//     daemonise or setsid away (sh -c '... &', mvnw/gradlew forking the app
//     JVM) are re-parented to it, so /proc still finds them all;
//   - it holds the read end of a pipe whose only writer is the backend: the
//     kernel closes it when the backend dies, even by SIGKILL, and the
//     supervisor sees EOF;
//   - to stop (SIGTERM from the backend, the backend gone, or the app's main
//     process exited) it sends SIGTERM to every descendant, so JVM shutdown
//     hooks run, waits the grace period, SIGKILLs what is left, reaps, and
//     exits with the app's exit code (128+signal when it was killed).
//
// See docs/decisions.md ("The app's process tree").

// superviseArg marks a supervisor invocation: tether __supervise GRACE PATH ARGV...
const superviseArg = "__supervise"

// supervisorOK is set by MaybeSupervise: this binary can re-execute itself as
// a supervisor. Binaries that never call it (other packages' test binaries)
// start apps directly, in their own process group.
var supervisorOK bool

// MaybeSupervise must be called first thing in main. When the process was
// started as an app's supervisor it runs it and exits; otherwise it returns
// at once and lets StartProcess use supervisors.
func MaybeSupervise() {
	if len(os.Args) > 1 && os.Args[1] == superviseArg {
		os.Exit(supervise(os.Args[2:]))
	}
	supervisorOK = true
}

// supervise runs the app args = GRACE PATH ARGV... and returns the exit code.
func supervise(args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "tether: internal command; usage: tether __supervise GRACE PATH ARGV...")
		return 2
	}
	grace, err := time.ParseDuration(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "tether: supervise:", err)
		return 2
	}
	path, argv := args[1], args[2:]
	// The app gets SIGKILL if this process is killed outright (the parent
	// death signal belongs to the thread that forks: keep it for good).
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "tether: supervise: cannot become a subreaper:", err)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	backendGone := make(chan struct{})
	if lifeline := os.NewFile(3, "lifeline"); lifeline != nil {
		go func() {
			var b [1]byte
			for {
				if _, err := lifeline.Read(b[:]); err != nil {
					close(backendGone)
					return
				}
			}
		}()
	}
	child, err := os.StartProcess(path, argv, &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "tether: start %s: %v\n", argv[0], err)
		return 127
	}
	s := &supervisor{self: os.Getpid(), child: child.Pid, code: -1}
	stopping := false
	for !s.childDone && !stopping {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGCHLD {
				s.reap()
			} else {
				stopping = true
			}
		case <-backendGone:
			stopping = true
		}
	}
	s.stopTree(grace, sigs)
	if s.code < 0 {
		return 128 + int(syscall.SIGKILL)
	}
	return s.code
}

type supervisor struct {
	self, child int
	childDone   bool
	code        int
}

// reap collects every exited child (the app and re-parented orphans).
func (s *supervisor) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		if pid == s.child {
			s.childDone = true
			s.code = ws.ExitStatus()
			if ws.Signaled() {
				s.code = 128 + int(ws.Signal())
			}
		}
	}
}

// stopTree sends SIGTERM to every descendant, SIGKILL to those left after
// grace, and returns when none is left.
func (s *supervisor) stopTree(grace time.Duration, sigs <-chan os.Signal) {
	deadline := time.Now().Add(grace)
	termed := map[procID]bool{}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.reap()
		ds := descendants(s.self)
		if len(ds) == 0 {
			return
		}
		kill := time.Now().After(deadline)
		for _, d := range ds {
			switch {
			case kill:
				_ = syscall.Kill(d.pid, syscall.SIGKILL)
			case !termed[d]:
				termed[d] = true
				_ = syscall.Kill(d.pid, syscall.SIGTERM)
			}
		}
		select {
		case <-sigs: // SIGCHLD, or a second stop request: carry on
		case <-tick.C:
		}
	}
}

// procID is a process: pid and start time, so a reused pid is another.
type procID struct {
	pid   int
	start string
}

// descendants lists the live (not zombie) processes below root, from /proc.
func descendants(root int) []procID {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	type info struct {
		ppid   int
		start  string
		zombie bool
	}
	procs := map[int]info{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		st := string(b)
		i := strings.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(st[i+1:]) // state ppid pgrp ... starttime is f[19]
		if len(f) < 20 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		procs[pid] = info{ppid: ppid, start: f[19], zombie: f[0] == "Z" || f[0] == "X"}
	}
	var out []procID
	for pid, in := range procs {
		if in.zombie || pid == root {
			continue
		}
		for p, hops := in.ppid, 0; p > 1 && hops < 4096; hops++ {
			if p == root {
				out = append(out, procID{pid, in.start})
				break
			}
			p = procs[p].ppid
		}
	}
	return out
}
