package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/client"
	"github.com/tether-dev/tether/internal/syncbuf"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

func initialize(t *testing.T, c *client.Client, params map[string]any) protocol.InitializeResult {
	t.Helper()
	var res protocol.InitializeResult
	if err := c.Call(ctxT(t), "initialize", params, &res); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	if err := c.Notify("initialized", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	return res
}

func rpcCode(t *testing.T, err error) int {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("want an error reply, got %v", err)
	}
	return e.Code
}

func expectCode(t *testing.T, err error, code int, contains string) *client.Error {
	t.Helper()
	if got := rpcCode(t, err); got != code {
		t.Fatalf("code = %d (%v), want %d", got, err, code)
	}
	var e *client.Error
	errors.As(err, &e)
	if !strings.Contains(e.Message, contains) {
		t.Fatalf("message %q does not contain %q", e.Message, contains)
	}
	return e
}

var sshProxy = map[string]any{
	"name":   "dev-bastion",
	"ssh":    map[string]any{"host": "10.200.0.2", "port": 22, "user": "dev", "strictHostKeyChecking": "yes"},
	"routes": map[string]any{"cidrs": []string{"10.10.0.0/16"}, "domains": []string{"vpc.internal"}},
}

var javaConfig = map[string]any{
	"name": "orders", "type": "java",
	"java":         map[string]any{"mainClass": "com.example.Main", "classpath": []string{"build/classes"}},
	"env":          map[string]any{"SPRING_PROFILES_ACTIVE": "dev"},
	"interconnect": map[string]any{"enabled": true, "proxy": "dev-bastion"},
}

// TestAcceptance is the acceptance scenario, as a new user's IDE
// would play it over stdio.
func TestAcceptance(t *testing.T) {
	ws := t.TempDir()
	p := startServe(t)
	ctx := ctxT(t)
	res := initialize(t, p.Client, map[string]any{"processId": os.Getpid(), "rootUri": "file://" + ws,
		"clientInfo": map[string]any{"name": "e2e", "version": "1"}, "capabilities": map[string]any{}})
	if res.ServerInfo.Name != "tether" || res.ProtocolVersion != protocol.ProtocolVersion || res.Capabilities.Workspace != ws {
		t.Fatalf("initialize result = %+v", res)
	}

	var saved protocol.SaveResult
	if err := p.Call(ctx, "proxy/save", map[string]any{"proxy": sshProxy}, &saved); err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "runConfig/save", map[string]any{"config": javaConfig}, &saved); err != nil {
		t.Fatal(err)
	}
	var proxies protocol.ProxyListResult
	if err := p.Call(ctx, "proxy/list", map[string]any{}, &proxies); err != nil {
		t.Fatal(err)
	}
	if len(proxies.Proxies) != 1 || proxies.Proxies[0].SSH.Host != "10.200.0.2" || proxies.Revision != saved.Revision {
		t.Fatalf("proxies = %+v (revision %s)", proxies, saved.Revision)
	}
	var list protocol.RunConfigListResult
	if err := p.Call(ctx, "runConfig/list", map[string]any{}, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Configs) != 1 || list.Configs[0].Name != "orders" {
		t.Fatalf("configs = %+v", list)
	}
	var rc protocol.RunConfig
	if err := p.Call(ctx, "runConfig/get", map[string]any{"name": "orders"}, &rc); err != nil {
		t.Fatal(err)
	}
	if rc.Java.MainClass != "com.example.Main" || rc.Env["SPRING_PROFILES_ACTIVE"] != "dev" || !rc.Interconnect.Enabled {
		t.Fatalf("config = %+v", rc)
	}

	// A broken configuration: field-path problems, and its save refused.
	broken := map[string]any{"name": "broken", "type": "java", "java": map[string]any{"classpath": []string{"x"}},
		"interconnect": map[string]any{"enabled": true, "proxy": "nope"}, "debugg": true}
	var vr protocol.ValidateResult
	if err := p.Call(ctx, "runConfig/validate", map[string]any{"config": broken}, &vr); err != nil {
		t.Fatal(err)
	}
	if len(vr.Problems) == 0 || vr.Problems[0].Path != "debugg" {
		t.Fatalf("problems = %+v", vr.Problems)
	}
	delete(broken, "debugg")
	if err := p.Call(ctx, "runConfig/validate", map[string]any{"config": broken}, &vr); err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	for _, pr := range vr.Problems {
		paths[pr.Path] = true
	}
	if !paths["java.mainClass"] || !paths["interconnect.proxy"] {
		t.Fatalf("problems = %+v", vr.Problems)
	}
	err := p.Call(ctx, "runConfig/save", map[string]any{"config": broken}, nil)
	e := expectCode(t, err, protocol.CodeInvalidParams, "config is invalid")
	var data protocol.ErrorData
	if json.Unmarshal(e.Data, &data) != nil || len(data.Problems) != 2 || data.Category != "config" {
		t.Fatalf("error data = %s", e.Data)
	}

	// Garbage, an unknown method and a wrongly typed param: errors, and the
	// connection keeps working.
	if err := p.WriteRaw([]byte(`{"jsonrpc": "2.0", "id": 99, "method": `)); err != nil {
		t.Fatal(err)
	}
	m, err := p.WaitNotification(ctx, func(m client.Message) bool { return m.Error != nil && m.Error.Code == protocol.CodeParseError })
	if err != nil || string(m.ID) != "null" && len(m.ID) != 0 {
		t.Fatalf("parse error reply: %+v %v", m, err)
	}
	expectCode(t, p.Call(ctx, "runConfig/frobnicate", map[string]any{}, nil), protocol.CodeMethodNotFound, "runConfig/frobnicate")
	expectCode(t, p.Call(ctx, "runConfig/get", map[string]any{"name": 5}, nil), protocol.CodeInvalidParams, "name: expected a string")

	if err := p.Call(ctx, "shutdown", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Notify("exit", nil); err != nil {
		t.Fatal(err)
	}
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	s, err := (&workspace.Workspace{Dir: ws}).Load()
	if err != nil || len(s.Problems) > 0 {
		t.Fatal(err, s.Problems)
	}
	if len(s.File.Configurations) != 1 || len(s.File.Proxies) != 1 || s.File.Configurations[0].Name != "orders" {
		t.Fatalf("tether.yaml holds %+v", s.File)
	}
}

func TestLifecycle(t *testing.T) {
	ws := t.TempDir()
	t.Run("before initialize", func(t *testing.T) {
		p := startServe(t)
		expectCode(t, p.Call(ctxT(t), "runConfig/list", map[string]any{}, nil), protocol.CodeServerNotInitialized, "initialize")
		// exit without shutdown: 1
		_ = p.Notify("exit", nil)
		if code := p.exitCode(t); code != 1 {
			t.Fatalf("exit code %d, want 1", code)
		}
	})
	t.Run("eof without shutdown", func(t *testing.T) {
		p := startServe(t, "--workspace", ws)
		initialize(t, p.Client, map[string]any{})
		p.Close()
		if code := p.exitCode(t); code != 1 {
			t.Fatalf("exit code %d, want 1", code)
		}
	})
	t.Run("workspace from folders", func(t *testing.T) {
		p := startServe(t)
		res := initialize(t, p.Client, map[string]any{"workspaceFolders": []any{map[string]any{"uri": "file://" + ws, "name": "w"}}})
		if res.Capabilities.Workspace != ws {
			t.Fatalf("workspace = %q", res.Capabilities.Workspace)
		}
		expectCode(t, p.Call(ctxT(t), "initialize", map[string]any{}, nil), protocol.CodeInvalidState, "already")
	})
	t.Run("no workspace", func(t *testing.T) {
		p := startServe(t)
		expectCode(t, p.Call(ctxT(t), "initialize", map[string]any{}, nil), protocol.CodeInvalidParams, "rootUri: required")
		expectCode(t, p.Call(ctxT(t), "initialize", map[string]any{"rootUri": "http://x/"}, nil), protocol.CodeInvalidParams, "rootUri")
	})
	t.Run("after shutdown", func(t *testing.T) {
		p := startServe(t, "--workspace", ws)
		initialize(t, p.Client, map[string]any{})
		if err := p.Call(ctxT(t), "shutdown", nil, nil); err != nil {
			t.Fatal(err)
		}
		expectCode(t, p.Call(ctxT(t), "runConfig/list", map[string]any{}, nil), protocol.CodeInvalidState, "shutting down")
	})
}

func TestLogsReachClient(t *testing.T) {
	p := startServe(t, "--workspace", t.TempDir())
	initialize(t, p.Client, map[string]any{})
	if err := p.Call(ctxT(t), "proxy/save", map[string]any{"proxy": sshProxy}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := p.WaitNotification(ctxT(t), func(m client.Message) bool {
		return m.Method == "window/logMessage" && strings.Contains(string(m.Params), "proxy saved")
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCancelProgressPanic(t *testing.T) {
	p := startServe(t, "--workspace", t.TempDir())
	initialize(t, p.Client, map[string]any{})
	ctx := ctxT(t)

	marker := filepath.Join(t.TempDir(), "cancelled")
	id, ch, err := p.Send("test/sleep", map[string]any{"ms": 20000, "marker": marker, "workDoneToken": "tok-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitNotification(ctx, func(m client.Message) bool {
		return m.Method == "$/progress" && strings.Contains(string(m.Params), `"kind":"report"`)
	}); err != nil {
		t.Fatal(err)
	}
	// Requests after an async one are still answered meanwhile.
	if err := p.Call(ctx, "runConfig/list", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Notify("$/cancelRequest", map[string]any{"id": id}); err != nil {
		t.Fatal(err)
	}
	expectCode(t, p.Wait(ctx, ch, nil), protocol.CodeRequestCancelled, "cancelled")
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("handler context was not cancelled")
	}
	if _, err := p.WaitNotification(ctx, func(m client.Message) bool {
		return m.Method == "$/progress" && strings.Contains(string(m.Params), `"kind":"end"`)
	}); err != nil {
		t.Fatal(err)
	}

	e := expectCode(t, p.Call(ctx, "test/panic", map[string]any{}, nil), protocol.CodeInternalError, "test panic")
	if !strings.Contains(string(e.Data), `"bug"`) {
		t.Fatalf("data = %s", e.Data)
	}
	if err := p.Call(ctx, "runConfig/list", map[string]any{}, nil); err != nil {
		t.Fatalf("server did not survive a panic: %v", err)
	}
}

func TestDisconnectCancelsWork(t *testing.T) {
	p := startServe(t, "--workspace", t.TempDir())
	initialize(t, p.Client, map[string]any{})
	marker := filepath.Join(t.TempDir(), "cancelled")
	if _, _, err := p.Send("test/sleep", map[string]any{"ms": 20000, "marker": marker}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	p.Close()
	p.exitCode(t)
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("work of a vanished client was not cancelled")
	}
}

func TestOversizedMessage(t *testing.T) {
	p := startServe(t, "--workspace", t.TempDir())
	initialize(t, p.Client, map[string]any{})
	big := make([]byte, 65<<20)
	for i := range big {
		big[i] = ' '
	}
	copy(big, `{"jsonrpc":"2.0","id":7,"method":"runConfig/list","params":{}}`)
	if err := p.WriteRaw(big); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if _, err := p.WaitNotification(ctx, func(m client.Message) bool {
		return m.Error != nil && m.Error.Code == protocol.CodeInvalidRequest && strings.Contains(m.Error.Message, "over the limit")
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "runConfig/list", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	// Not a JSON-RPC message, and a batch: -32600, the connection goes on.
	_ = p.WriteRaw([]byte(`{"id": 8, "hello": 1}`))
	_ = p.WriteRaw([]byte(`[{"jsonrpc":"2.0","id":9,"method":"runConfig/list"}]`))
	if err := p.Call(ctx, "runConfig/list", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range p.Notifications() {
		if m.Error != nil && m.Error.Code == protocol.CodeInvalidRequest {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d invalid-request replies, want 3: %+v", n, p.Notifications())
	}
}

func TestConflictAndDelete(t *testing.T) {
	ws := t.TempDir()
	a := startServe(t, "--workspace", ws)
	b := startServe(t, "--workspace", ws)
	initialize(t, a.Client, map[string]any{})
	initialize(t, b.Client, map[string]any{})
	ctx := ctxT(t)
	var la, lb protocol.ProxyListResult
	_ = a.Call(ctx, "proxy/list", map[string]any{}, &la)
	_ = b.Call(ctx, "proxy/list", map[string]any{}, &lb)
	if err := a.Call(ctx, "proxy/save", map[string]any{"proxy": sshProxy, "revision": la.Revision}, nil); err != nil {
		t.Fatal(err)
	}
	expectCode(t, b.Call(ctx, "proxy/save", map[string]any{"proxy": sshProxy, "revision": lb.Revision}, nil), protocol.CodeConflict, "changed")
	if err := b.Call(ctx, "runConfig/save", map[string]any{"config": javaConfig}, nil); err != nil {
		t.Fatal(err)
	}
	expectCode(t, a.Call(ctx, "proxy/delete", map[string]any{"name": "dev-bastion"}, nil), protocol.CodeInvalidParams, "orders")
	if err := a.Call(ctx, "interconnect/set", map[string]any{"config": "orders", "enabled": false}, nil); err != nil {
		t.Fatal(err)
	}
	var rc protocol.RunConfig
	_ = b.Call(ctx, "runConfig/get", map[string]any{"name": "orders"}, &rc)
	if rc.Interconnect.Enabled || rc.Interconnect.Proxy != "dev-bastion" {
		t.Fatalf("interconnect = %+v", rc.Interconnect)
	}
	if err := a.Call(ctx, "runConfig/delete", map[string]any{"name": "orders"}, nil); err != nil {
		t.Fatal(err)
	}
	expectCode(t, a.Call(ctx, "runConfig/get", map[string]any{"name": "orders"}, nil), protocol.CodeNotFound, "orders")
	expectCode(t, a.Call(ctx, "runConfig/delete", map[string]any{"name": "orders"}, nil), protocol.CodeNotFound, "orders")
	if err := a.Call(ctx, "proxy/delete", map[string]any{"name": "dev-bastion"}, nil); err != nil {
		t.Fatal(err)
	}
	expectCode(t, a.Call(ctx, "proxy/save", map[string]any{"proxy": map[string]any{"name": "x"}}, nil), protocol.CodeInvalidParams, "ssh: required")
}

func TestHandEditedFileProblems(t *testing.T) {
	ws := t.TempDir()
	_ = os.WriteFile(filepath.Join(ws, "tether.yaml"), []byte("version: 1\nconfigurations:\n  - name: a\n    type: jav\n"), 0o644)
	p := startServe(t, "--workspace", ws)
	initialize(t, p.Client, map[string]any{})
	var list protocol.RunConfigListResult
	if err := p.Call(ctxT(t), "runConfig/list", map[string]any{}, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Problems) != 1 || list.Problems[0].Path != "configurations[0].type" || list.Problems[0].Line != 4 {
		t.Fatalf("problems = %+v", list.Problems)
	}
	_ = os.WriteFile(filepath.Join(ws, "tether.yaml"), []byte("version: [1\n"), 0o644)
	expectCode(t, p.Call(ctxT(t), "runConfig/list", map[string]any{}, nil), protocol.CodeWorkspaceInvalid, "not valid YAML")
}

func TestParentExit(t *testing.T) {
	ide := exec.Command("sleep", "60")
	if err := ide.Start(); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "--workspace", t.TempDir(), "--ppid", fmt.Sprint(ide.Process.Pid))
	initialize(t, p.Client, map[string]any{})
	_ = ide.Process.Kill()
	_ = ide.Wait()
	if code := p.exitCode(t); code != 1 {
		t.Fatalf("exit code %d", code)
	}
}

// serveListen starts `tether serve --listen spec` and returns the address
// line it prints.
func serveListen(t *testing.T, ws string, args ...string) (addr, tokenFile string) {
	t.Helper()
	cmd := exec.Command(tetherBin, append([]string{"serve", "--workspace", ws, "--output", "json"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("tether serve stderr:\n%s", stderr.String())
		}
	})
	var info map[string]string
	if err := json.NewDecoder(bufio.NewReader(out)).Decode(&info); err != nil {
		t.Fatal(err)
	}
	return info["address"], info["tokenFile"]
}

func dialClient(t *testing.T, addr string) *client.Client {
	network, a, _ := strings.Cut(addr, ":")
	c, err := net.Dial(network, a)
	if err != nil {
		t.Fatal(err)
	}
	cl := client.New(c, c, c)
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestUnixSocketTwoClients(t *testing.T) {
	ws := t.TempDir()
	sock := filepath.Join(t.TempDir(), "tether.sock")
	addr, _ := serveListen(t, ws, "--listen", "unix:"+sock)
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", st.Mode(), err)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialClient(t, addr)
			initialize(t, c, map[string]any{})
			for j := range 20 {
				cfg := map[string]any{"name": fmt.Sprintf("c%d-%d", i, j), "type": "exec", "exec": map[string]any{"command": []string{"true"}}}
				if err := c.Call(ctxT(t), "runConfig/save", map[string]any{"config": cfg}, nil); err != nil {
					t.Error(err)
				}
			}
			if err := c.Call(ctxT(t), "shutdown", nil, nil); err != nil {
				t.Error(err)
			}
			_ = c.Notify("exit", nil)
		}()
	}
	wg.Wait()
	s, _ := (&workspace.Workspace{Dir: ws}).Load()
	if len(s.File.Configurations) != 40 {
		t.Fatalf("%d configurations, want 40", len(s.File.Configurations))
	}
	// The server outlives its clients.
	c := dialClient(t, addr)
	initialize(t, c, map[string]any{})
}

func TestTCPNeedsToken(t *testing.T) {
	ws := t.TempDir()
	addr, tokenFile := serveListen(t, ws, "--listen", "tcp:127.0.0.1:0", "--token-file", filepath.Join(t.TempDir(), "tok"))
	st, err := os.Stat(tokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	tok, _ := os.ReadFile(tokenFile)

	bad := dialClient(t, addr)
	expectCode(t, bad.Call(ctxT(t), "initialize", map[string]any{"initializationOptions": map[string]any{"token": "wrong"}}, nil),
		protocol.CodeUnauthorized, "token")
	select {
	case <-bad.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("connection with a wrong token stayed open")
	}
	good := dialClient(t, addr)
	initialize(t, good, map[string]any{"initializationOptions": map[string]any{"token": strings.TrimSpace(string(tok))}})
	if err := good.Call(ctxT(t), "runConfig/list", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(tetherBin, "serve", "--listen", "tcp:0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "only loopback") {
		t.Fatalf("non-loopback listen: %v %s", err, out)
	}
}

func TestCLI(t *testing.T) {
	out, err := exec.Command(tetherBin, "schema").Output()
	if err != nil || string(out) != string(workspace.JSONSchema()) {
		t.Fatalf("schema: %v", err)
	}
	out, err = exec.Command(tetherBin, "version", "--output", "json").Output()
	var v map[string]string
	if err != nil || json.Unmarshal(out, &v) != nil || v["protocolVersion"] != protocol.ProtocolVersion {
		t.Fatalf("version: %v %s", err, out)
	}
	out, _ = exec.Command(tetherBin, "bogus").CombinedOutput()
	if !strings.Contains(string(out), `unknown command "bogus"`) || !strings.Contains(string(out), "tether serve") {
		t.Fatalf("unknown command: %s", out)
	}
	out, _ = exec.Command(tetherBin, "serve", "--workspace", "/nonexistent").CombinedOutput()
	if !strings.Contains(string(out), "not a directory") {
		t.Fatalf("bad workspace: %s", out)
	}
}

// TestIDEProcessEndsItsSessionOnly: with --listen, a client whose IDE
// process is gone loses its session; the server and other clients go on.
func TestIDEProcessEndsItsSessionOnly(t *testing.T) {
	ws := t.TempDir()
	addr, _ := serveListen(t, ws, "--listen", "unix:"+filepath.Join(t.TempDir(), "s.sock"))
	ide := exec.Command("sleep", "60")
	if err := ide.Start(); err != nil {
		t.Fatal(err)
	}
	a := dialClient(t, addr)
	initialize(t, a, map[string]any{"processId": ide.Process.Pid})
	b := dialClient(t, addr)
	initialize(t, b, map[string]any{"processId": os.Getpid()})
	_ = ide.Process.Kill()
	_ = ide.Wait()
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session of a vanished IDE stayed open")
	}
	if err := b.Call(ctxT(t), "runConfig/list", map[string]any{}, nil); err != nil {
		t.Fatalf("other client: %v", err)
	}
}
