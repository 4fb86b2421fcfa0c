package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-dap"

	"github.com/tether-dev/tether/debugadapter/daptest"
	"github.com/tether-dev/tether/internal/fakecloud"
	"github.com/tether-dev/tether/internal/syncbuf"
	"github.com/tether-dev/tether/protocol"
)

// dapProgram is debugged in the vpc; dapLine is the breakpoint line.
const dapProgram = `package main

import (
	"fmt"
	"time"
)

func main() {
	total := 0
	for i := 0; ; i++ {
		total += i
		fmt.Println("tick", i, total)
		time.Sleep(20 * time.Millisecond)
	}
}
`

const dapLine = 11 // total += i

// requireDlv finds dlv, installing the pinned version when it is missing.
func requireDlv(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("dlv"); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	bin := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "dlv")
	if _, err := os.Stat(bin); err != nil {
		out, err := exec.Command("go", "install", "github.com/go-delve/delve/cmd/dlv@v1.27.2").CombinedOutput()
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("dlv is missing and go install failed (make deps installs it): %v\n%s", err, out)
			}
			t.Skipf("dlv is missing: %v", err)
		}
	}
	return bin
}

// dapWS is a fake cloud, a workspace with a proxy to its bastion, and the
// debug program: built in buildDir, "checked out" locally in localDir.
type dapWS struct {
	cloud              *fakecloud.Cloud
	dir                string
	buildDir, localDir string
	prog               string
}

func startDAPWS(t *testing.T) *dapWS {
	t.Helper()
	c := fakecloud.Start(t)
	w := &dapWS{cloud: c, dir: t.TempDir(), buildDir: t.TempDir(), localDir: t.TempDir()}
	host, port, _ := net.SplitHostPort(c.SSHAddr)
	yaml := fmt.Sprintf(`version: 1
proxies:
  - name: bastion
    ssh: {host: %s, port: %s, user: %s, identityFile: %s, knownHostsFile: %s, strictHostKeyChecking: "yes"}
    routes: {cidrs: [%s]}
`, host, port, c.User, c.IdentityFile, c.KnownHostsFile, c.VPCCIDR)
	if err := os.WriteFile(filepath.Join(w.dir, "tether.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{w.buildDir, w.localDir} {
		if err := os.WriteFile(filepath.Join(d, "main.go"), []byte(dapProgram), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w.prog = filepath.Join(w.buildDir, "prog")
	build := exec.Command("go", "build", "-gcflags=all=-N -l", "-o", w.prog, "main.go")
	build.Dir = w.buildDir
	build.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return w
}

// headless is dlv running the program inside the vpc.
type headless struct {
	cmd    *exec.Cmd
	pids   []int // dlv and the program it started
	addr   string
	out    *syncbuf.Buffer
	exited chan struct{}
}

// startDelve runs dlv headless inside the vpc, listening on its vpc address.
func (w *dapWS) startDelve(t *testing.T) *headless {
	t.Helper()
	dlv := requireDlv(t)
	// A free port: bind, note, close.
	ln, err := w.cloud.ListenInVPC(net.JoinHostPort(w.cloud.ServiceIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &headless{addr: addr, out: &syncbuf.Buffer{}, exited: make(chan struct{})}
	h.cmd = exec.Command("ip", "netns", "exec", w.cloud.VPCNS, dlv, "exec", "--headless", "--listen", addr,
		"--accept-multiclient", "--api-version", "2", "--continue", w.prog)
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.out
	h.cmd.WaitDelay = 5 * time.Second // the program holds the output pipe too
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.cmd.Wait(); close(h.exited) }()
	t.Cleanup(func() {
		// By PID: dlv and the program it started (its own process group).
		for _, pid := range h.pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = h.cmd.Process.Kill()
		<-h.exited
		if t.Failed() {
			t.Logf("dlv output:\n%s", tail(h.out.String(), 3000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(h.out.String(), "tick") {
		if time.Now().After(deadline) {
			t.Fatalf("dlv did not start the program:\n%s", h.out.String())
		}
		select {
		case <-h.exited:
			t.Fatalf("dlv exited:\n%s", h.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	h.pids = append(descendants(h.cmd.Process.Pid), h.cmd.Process.Pid)
	return h
}

// descendants lists the processes below pid, deepest first.
func descendants(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, c := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(c); err == nil {
				out = append(append(descendants(n), out...), n)
			}
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// dapProc is a running `tether dap` with a DAP client on its stdio.
type dapProc struct {
	*daptest.Client
	*tetherProc
}

func startDAP(t *testing.T, ws string) *dapProc {
	t.Helper()
	tp := startTether(t, "dap", "--workspace", ws, "--verbose")
	return &dapProc{Client: daptest.NewClient(tp.stdout, tp.stdin, tp.stdin), tetherProc: tp}
}

func (p *dapProc) expectExit(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("tether dap exit code %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tether dap did not exit after disconnect")
	}
}

// attach initializes and attaches; it returns once the attach response and
// the initialized event (in either order) are in.
func (p *dapProc) attach(t *testing.T, w *dapWS, target string) {
	t.Helper()
	p.InitializeRequest()
	p.ExpectInitializeResponse(t)
	p.AttachRequest(map[string]any{"proxy": "bastion", "target": target, "mode": "remote",
		"substitutePath": []any{map[string]any{"from": w.localDir, "to": w.buildDir}}})
	var attached, initialized bool
	for !attached || !initialized {
		switch m := p.Next(t).(type) {
		case *dap.AttachResponse:
			attached = true
		case *dap.InitializedEvent:
			initialized = true
		case *dap.ErrorResponse:
			t.Fatalf("attach failed: %s", m.Message)
		}
	}
}

// TestDAPBridgeDelve: VS Code's path — a DAP client on `tether dap`
// debugs a Go program under real delve inside the vpc, with breakpoints and
// stack frames in the local checkout's paths.
func TestDAPBridgeDelve(t *testing.T) {
	start := time.Now()
	w := startDAPWS(t)
	h := w.startDelve(t)
	p := startDAP(t, w.dir)
	p.attach(t, w, h.addr)

	local := filepath.Join(w.localDir, "main.go")
	p.SetBreakpointsRequest(local, dapLine)
	sb := p.ExpectSetBreakpointsResponse(t)
	if len(sb.Body.Breakpoints) != 1 || !sb.Body.Breakpoints[0].Verified {
		t.Fatalf("breakpoint not verified: %s", p.LastRaw())
	}
	if bp := sb.Body.Breakpoints[0]; bp.Source != nil && bp.Source.Path != "" && bp.Source.Path != local {
		t.Errorf("breakpoint source %q, want the local path %q", bp.Source.Path, local)
	}
	p.ConfigurationDoneRequest()
	p.ExpectConfigurationDoneResponse(t)
	stopped := p.ExpectStoppedEvent(t)
	if stopped.Body.Reason != "breakpoint" {
		t.Errorf("stopped for %q: %s", stopped.Body.Reason, p.LastRaw())
	}
	p.StackTraceRequest(stopped.Body.ThreadId, 0, 20)
	st := p.ExpectStackTraceResponse(t)
	if len(st.Body.StackFrames) == 0 {
		t.Fatalf("no frames: %s", p.LastRaw())
	}
	top := st.Body.StackFrames[0]
	if top.Source == nil || top.Source.Path != local || top.Line != dapLine {
		t.Fatalf("top frame %s, want %s:%d", p.LastRaw(), local, dapLine)
	}

	p.ScopesRequest(top.Id)
	sc := p.ExpectScopesResponse(t)
	if len(sc.Body.Scopes) == 0 {
		t.Fatalf("no scopes: %s", p.LastRaw())
	}
	p.VariablesRequest(sc.Body.Scopes[0].VariablesReference)
	vars := p.ExpectVariablesResponse(t)
	values := map[string]string{}
	for _, v := range vars.Body.Variables {
		values[v.Name] = v.Value
	}
	i, err := strconv.Atoi(values["i"])
	if err != nil {
		t.Fatalf("locals %v: %s", values, p.LastRaw())
	}
	if want := strconv.Itoa(i * (i - 1) / 2); values["total"] != want {
		t.Errorf("total = %q at i = %d, want %s", values["total"], i, want)
	}
	p.EvaluateRequest("total + 1000", top.Id, "repl")
	ev := p.ExpectEvaluateResponse(t)
	if n, _ := strconv.Atoi(values["total"]); ev.Body.Result != strconv.Itoa(n+1000) {
		t.Errorf("evaluate total + 1000 = %q, total %q", ev.Body.Result, values["total"])
	}

	p.DisconnectRequest(true)
	p.ExpectDisconnectResponse(t)
	p.expectExit(t)
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("dlv still running after disconnect with terminateDebuggee")
	}
	if left := runningIn(w.cloud.VPCNS, w.prog, "dlv"); len(left) > 0 {
		t.Errorf("still running in the vpc: %v (started %v)", left, h.pids)
	}
	t.Logf("debug session through the tunnel: %s", time.Since(start).Round(time.Millisecond))
}

// runningIn lists processes in a namespace whose executable is one of names
// (a path or a base name).
func runningIn(ns string, names ...string) []string {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	var left []string
	for _, f := range strings.Fields(string(out)) {
		exe, err := os.Readlink("/proc/" + f + "/exe")
		if err != nil {
			continue
		}
		for _, n := range names {
			if exe == n || filepath.Base(exe) == n {
				left = append(left, f+" "+exe)
			}
		}
	}
	return left
}

// TestDAPAttachErrors: a target that refuses, and one that is not a debug
// adapter, give a clear attach error quickly.
func TestDAPAttachErrors(t *testing.T) {
	w := startDAPWS(t)
	tests := []struct {
		name, target, want string
	}{
		{"nothing listening", w.cloud.ClosedAddr, w.cloud.ClosedAddr + " refused by the proxy machine"},
		{"not a debug adapter", w.cloud.HTTPAddr, "does not speak the Debug Adapter Protocol"},
		{"no such host", "nope." + fakecloud.Zone + ":4000", "no such host on the proxy machine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startDAP(t, w.dir)
			p.InitializeRequest()
			p.ExpectInitializeResponse(t)
			began := time.Now()
			p.AttachRequest(map[string]any{"proxy": "bastion", "target": tt.target, "mode": "remote"})
			er := p.ExpectErrorResponse(t)
			if !strings.Contains(er.Message, tt.want) || er.Body.Error == nil || !er.Body.Error.ShowUser {
				t.Errorf("attach error %s, want %q", p.LastRaw(), tt.want)
			}
			if d := time.Since(began); d > 15*time.Second {
				t.Errorf("attach error after %s", d)
			}
			p.DisconnectRequest(false)
			p.ExpectDisconnectResponse(t)
			p.expectExit(t)
		})
	}
}

// TestDAPRemoteKilled: delve dies mid-session; the IDE gets terminated.
func TestDAPRemoteKilled(t *testing.T) {
	w := startDAPWS(t)
	h := w.startDelve(t)
	p := startDAP(t, w.dir)
	p.attach(t, w, h.addr)
	p.ConfigurationDoneRequest()
	p.ExpectConfigurationDoneResponse(t)
	_ = h.cmd.Process.Kill() // dlv only: the program is killed in cleanup
	p.ExpectTerminatedEvent(t)
	p.ThreadsRequest()
	if er := p.ExpectErrorResponse(t); !strings.Contains(er.Message, "is gone") {
		t.Errorf("request after the remote died: %s", p.LastRaw())
	}
	p.DisconnectRequest(false)
	p.ExpectDisconnectResponse(t)
	p.expectExit(t)
}

// TestDAPServerEndpoint: `serve` hands out a loopback DAP endpoint; each
// connection is its own session with the client's workspace.
func TestDAPServerEndpoint(t *testing.T) {
	w := startDAPWS(t)
	s := startServe(t, "--workspace", w.dir)
	initialize(t, s.Client, map[string]any{})
	var res struct{ Address string }
	if err := s.Call(ctxT(t), "debug/dapServer", map[string]any{}, &res); err != nil {
		t.Fatal(err)
	}
	if host, _, err := net.SplitHostPort(res.Address); err != nil || host != "127.0.0.1" {
		t.Fatalf("address %q", res.Address)
	}
	var again struct{ Address string }
	if err := s.Call(ctxT(t), "debug/dapServer", map[string]any{}, &again); err != nil || again.Address != res.Address {
		t.Errorf("second call: %q, %v", again.Address, err)
	}
	for range 2 { // two sessions, one after the other
		conn, err := net.Dial("tcp", res.Address)
		if err != nil {
			t.Fatal(err)
		}
		c := daptest.NewClient(conn, conn, conn)
		c.InitializeRequest()
		c.ExpectInitializeResponse(t)
		if ss := dapSessions(t, s); len(ss) != 1 || ss[0].Peer != conn.LocalAddr().String() || ss[0].SessionID == "" {
			t.Errorf("interconnect/status dapSessions = %+v, want this connection", ss)
		}
		c.AttachRequest(map[string]any{"proxy": "bastion", "target": w.cloud.ClosedAddr})
		if er := c.ExpectErrorResponse(t); !strings.Contains(er.Message, "refused by the proxy machine") {
			t.Errorf("attach through the endpoint: %s", c.LastRaw())
		}
		c.DisconnectRequest(false)
		c.ExpectDisconnectResponse(t)
		c.ExpectEOF(t)
		for deadline := time.Now().Add(5 * time.Second); len(dapSessions(t, s)) > 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("dapSessions after the session ended: %+v", dapSessions(t, s))
			}
		}
	}
	s.Client.Close()
	s.exitCode(t)
	if c, err := net.DialTimeout("tcp", res.Address, time.Second); err == nil {
		c.Close()
		t.Error("the DAP endpoint outlived its client")
	}
}

// dapSessions is interconnect/status's list of DAP sessions.
func dapSessions(t *testing.T, s *proc) []protocol.DAPSessionStatus {
	t.Helper()
	var status protocol.InterconnectStatusResult
	if err := s.Call(ctxT(t), "interconnect/status", map[string]any{}, &status); err != nil {
		t.Fatal(err)
	}
	if status.DAPSessions == nil {
		t.Fatal("interconnect/status has no dapSessions")
	}
	return status.DAPSessions
}
