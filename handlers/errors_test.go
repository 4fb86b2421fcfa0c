package handlers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/internal/loopback"
	"github.com/tether-dev/tether/launch"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

// Each sentinel and category maps to its code and data.category, for the
// methods in general (AsError) and for those that open a tunnel or start an
// app (failedError).
func TestErrorMapping(t *testing.T) {
	problems := workspace.Problems{{Path: "java.mainClass", Message: "required"}}
	made := &Error{Code: protocol.CodeUnauthorized, Message: "x", Data: &protocol.ErrorData{Category: "user"}}
	cases := []struct {
		name     string
		err      error
		code     int // AsError
		failed   int // failedError
		category string
	}{
		{"made by a handler", made, protocol.CodeUnauthorized, protocol.CodeUnauthorized, "user"},
		{"invalid param", InvalidParams("port", "must be between 1 and 65535"), protocol.CodeInvalidParams, protocol.CodeInvalidParams, "user"},
		{"invalid configuration", fmt.Errorf("proxy p: %w", problems), protocol.CodeInvalidParams, protocol.CodeInvalidParams, "config"},
		{"not found", fmt.Errorf("run configuration %q: %w", "x", workspace.ErrNotFound), protocol.CodeNotFound, protocol.CodeNotFound, "user"},
		{"unknown session", fmt.Errorf("launch %q: %w", "l-x", launch.ErrUnknownSession), protocol.CodeNotFound, protocol.CodeNotFound, "user"},
		{"conflict", fmt.Errorf("%w (revision a, you have b)", workspace.ErrConflict), protocol.CodeConflict, protocol.CodeConflict, "user"},
		{"not YAML", &workspace.SyntaxError{Path: "tether.yaml", Err: errors.New("line 2")}, protocol.CodeWorkspaceInvalid, protocol.CodeWorkspaceInvalid, "config"},
		{"unknown version", &workspace.FileError{Path: "tether.yaml", Line: 1, Msg: "version 2"}, protocol.CodeWorkspaceInvalid, protocol.CodeWorkspaceInvalid, "config"},
		{"not supported", fmt.Errorf("docker: %w", launch.ErrNotSupported), protocol.CodeNotSupported, protocol.CodeNotSupported, "user"},
		{"user", errcat.User.New("cancelled by the user"), protocol.CodeInvalidParams, protocol.CodeLaunchFailed, "user"},
		{"config", errcat.Config.New("ssh config: bad Port"), protocol.CodeInvalidParams, protocol.CodeLaunchFailed, "config"},
		{"environment", fmt.Errorf("proxy p: %w", errcat.Environment.New("connection refused")), protocol.CodeEnvironment, protocol.CodeLaunchFailed, "environment"},
		{"bug (tagged)", errcat.Bug.New("impossible"), protocol.CodeInternalError, protocol.CodeInternalError, "bug"},
		{"bug (untagged)", errors.New("nobody said"), protocol.CodeInternalError, protocol.CodeInternalError, "bug"},
		{"cancelled, untagged", context.Canceled, protocol.CodeInternalError, protocol.CodeInternalError, "bug"}, // the server answers -32800 first
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range []struct {
				fn   func(error) *Error
				code int
			}{{AsError, c.code}, {failedError, c.failed}} {
				e := r.fn(c.err)
				if e.Code != r.code || e.Data == nil || e.Data.Category != c.category {
					t.Errorf("got %d %+v, want %d %q", e.Code, e.Data, r.code, c.category)
				}
				if e.IsBug() != (c.category == "bug") {
					t.Errorf("IsBug %v for category %q", e.IsBug(), c.category)
				}
				if !strings.Contains(e.Message, c.err.Error()) && !errors.As(c.err, new(workspace.Problems)) {
					t.Errorf("message %q lost %q", e.Message, c.err)
				}
			}
		})
	}
	if e := AsError(problems); len(e.Data.Problems) != 1 {
		t.Errorf("problems not in data: %+v", e.Data)
	}
	if _, err := launchError[any](nil, fmt.Errorf("proxy p: %w", problems)); !strings.HasPrefix(err.Error(), "the run configuration is invalid: ") {
		t.Errorf("launch of an invalid configuration: %v", err)
	}
}

// Real failures, made by the packages that make them, get the code and
// category their category asks for; none is -32603.
func TestErrorMappingOfRealFailures(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBECONFIG", "")
	t.Setenv("SSH_AUTH_SOCK", "")
	closed := loopback.ClosedPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, sshDown := sshplugin.Open(ctx, sshplugin.Config{Host: "127.0.0.1", Port: closed, SSHConfigFile: "none", Agent: sshplugin.AgentOff})
	_, sshBadConfig := sshplugin.Open(ctx, sshplugin.Config{Host: "127.0.0.1", SSHConfigFile: filepath.Join(t.TempDir(), "nope")})
	_, kubeMissing := kubernetesContexts(ctx, nil, &protocol.KubernetesContextsParams{Kubeconfig: filepath.Join(t.TempDir(), "nope")})
	_, kubeMissingNS := kubernetesNamespaces(ctx, nil, &protocol.KubernetesNamespacesParams{Kubeconfig: filepath.Join(t.TempDir(), "nope")})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, workspace.FileName), []byte("version: 1\nproxies: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, notYAML := (&workspace.Workspace{Dir: dir}).Load()
	_, cancelled := idePrompts{fakeClient{}}.Secret(ctx, "Password:", false)

	cases := []struct {
		name     string
		err      error
		via      func(error) *Error
		code     int
		category string
	}{
		{"ssh to a closed port", sshDown, AsError, protocol.CodeEnvironment, "environment"},
		{"ssh to a closed port, launching", sshDown, failedError, protocol.CodeLaunchFailed, "environment"},
		{"ssh config missing, launching", sshBadConfig, failedError, protocol.CodeLaunchFailed, "config"},
		{"kubeconfig missing", kubeMissing, AsError, protocol.CodeInvalidParams, "config"},
		{"kubeconfig missing, namespaces", kubeMissingNS, AsError, protocol.CodeLaunchFailed, "config"},
		{"tether.yaml not YAML", notYAML, AsError, protocol.CodeWorkspaceInvalid, "config"},
		{"prompt cancelled", cancelled, AsError, protocol.CodeInvalidParams, "user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil {
				t.Fatal("no error")
			}
			e := c.via(c.err)
			if e.Code != c.code || e.Data.Category != c.category {
				t.Errorf("got %d %q, want %d %q: %v", e.Code, e.Data.Category, c.code, c.category, c.err)
			}
		})
	}
}

// fakeClient answers every request with null (the user dismissed it).
type fakeClient struct{}

func (fakeClient) Notify(context.Context, string, any) error    { return nil }
func (fakeClient) Call(context.Context, string, any, any) error { return nil }
