package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/loopback"
	"github.com/tether-dev/tether/internal/syncbuf"
	"github.com/tether-dev/tether/protocol"
)

func errorCategory(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	d, _ := e["data"].(map[string]any)
	c, _ := d["category"].(string)
	return c
}

// TestErrorReplies walks realistic failures over the wire, without a
// network beyond loopback: each reply has the code of what failed and the
// category of who can fix it, and -32603 stays for bugs.
func TestErrorReplies(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBECONFIG", "")
	t.Setenv("SSH_AUTH_SOCK", "")
	closedPort := loopback.ClosedPort(t)

	good := t.TempDir()
	yaml := fmt.Sprintf(`version: 1
proxies:
  - name: down
    ssh: {host: 127.0.0.1, port: %d, user: dev}
configurations:
  - name: offline
    type: exec
    exec: {command: ["true"]}
    interconnect: {enabled: true, proxy: down}
`, closedPort)
	if err := os.WriteFile(filepath.Join(good, "tether.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "tether.yaml"), []byte("version: 1\nproxies: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "kubeconfig")

	cases := []struct {
		name     string
		ws       string
		method   string
		params   string
		code     int
		category string
	}{
		{"unknown method", good, "foo/bar", `{}`, protocol.CodeMethodNotFound, "user"},
		{"wrong param type", good, "runConfig/get", `{"name": 5}`, protocol.CodeInvalidParams, "user"},
		{"unknown name", good, "runConfig/get", `{"name": "nope"}`, protocol.CodeNotFound, "user"},
		{"stale revision", good, "runConfig/delete", `{"name": "offline", "revision": "0000"}`, protocol.CodeConflict, "user"},
		{"tether.yaml not YAML", broken, "runConfig/list", `{}`, protocol.CodeWorkspaceInvalid, "config"},
		{"kubeconfig missing", good, "kubernetes/contexts", fmt.Sprintf(`{"kubeconfig": %q}`, missing), protocol.CodeInvalidParams, "config"},
		{"kubeconfig missing, cluster call", good, "kubernetes/namespaces", fmt.Sprintf(`{"kubeconfig": %q}`, missing), protocol.CodeLaunchFailed, "config"},
		{"proxy down", good, "launch/prepare", `{"config": "offline"}`, protocol.CodeLaunchFailed, "environment"},
		{"proxy down, debug forward", good, "debug/forward", `{"proxy": "down", "host": "10.0.0.1", "port": 5005}`, protocol.CodeLaunchFailed, "environment"},
		{"unknown launch", good, "launch/stop", `{"launchId": "l-nope"}`, protocol.CodeNotFound, "user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var log syncbuf.Buffer
			addr := serveUnix(t, Options{Workspace: c.ws, Logger: slog.New(slog.NewTextHandler(&log, nil))})
			cl := dialRaw(t, addr)
			cl.initialize(1)
			cl.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":%q,"params":%s}`, c.method, c.params))
			m := cl.reply("2")
			if got := errorCode(m); got != c.code {
				t.Fatalf("code %d, want %d: %v", got, c.code, m["error"])
			}
			if got := errorCategory(m); got != c.category {
				t.Fatalf("category %q, want %q: %v", got, c.category, m["error"])
			}
			if strings.Contains(log.String(), "untagged error") {
				t.Errorf("a bug was logged: %s", log.String())
			}
		})
	}
}

// An error nobody tagged is a bug: -32603 with category "bug", and logged
// with its chain so that a developer can find where it was made.
func TestUntaggedErrorIsLoggedAsBug(t *testing.T) {
	var log syncbuf.Buffer
	s := &session{log: slog.New(slog.NewTextHandler(&log, nil))}
	_, cause := os.Open(filepath.Join(t.TempDir(), "nope"))
	je := s.replyError("runConfig/list", fmt.Errorf("reading: %w", cause))
	if int(je.Code) != protocol.CodeInternalError || !strings.Contains(string(je.Data), `"bug"`) {
		t.Fatalf("reply %d %s, want -32603 bug", je.Code, je.Data)
	}
	if !strings.Contains(je.Message, "this is a bug") {
		t.Errorf("message %q should say it is a bug", je.Message)
	}
	out := log.String()
	for _, want := range []string{"level=ERROR", "untagged error", "method=runConfig/list", "*fmt.wrapError > *fs.PathError > syscall.Errno"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}
