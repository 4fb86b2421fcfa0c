// Package handlers holds one thin file per JSON-RPC method group: each
// handler decodes its params, resolves its inputs and hands off to a domain
// package (workspace, launch, plugins). Connection lifecycle lives in server.
package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/launch"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

// Client is what a handler may send to the IDE.
type Client interface {
	Notify(ctx context.Context, method string, params any) error
	Call(ctx context.Context, method string, params, result any) error
}

// Env is one client's view of the backend, given to every handler.
type Env struct {
	Workspace *workspace.Workspace
	Client    Client
	Log       *slog.Logger
	// Launches holds this client's sessions; they end with the client.
	Launches *launch.Manager
	// Prompts asks the client's user (host keys, passwords).
	Prompts sshplugin.Prompts
}

// Method is a registered request handler.
type Method struct {
	Handle func(ctx context.Context, env *Env, params json.RawMessage) (any, error)
	// Async handlers may wait (network, processes): they run concurrently
	// with later requests and can be cancelled. Others run in order.
	Async bool
}

var (
	methods     = map[string]Method{}
	launchTypes []string // run configuration types this build can launch
	proxyKinds  []string // proxy kinds this build can connect through
)

// LaunchTypes lists the run configuration types this build can launch.
func LaunchTypes() []string { return nonNil(launchTypes) }

// ProxyKinds lists the proxy kinds this build can connect through.
func ProxyKinds() []string { return nonNil(proxyKinds) }

func register(name string, m Method) { methods[name] = m }

// Lookup returns the handler for a method.
func Lookup(name string) (Method, bool) {
	m, ok := methods[name]
	return m, ok
}

// Names lists the registered methods, sorted.
func Names() []string {
	names := make([]string, 0, len(methods))
	for n := range methods {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// typed adapts a handler with decoded params.
func typed[P any](fn func(ctx context.Context, env *Env, p *P) (any, error)) func(context.Context, *Env, json.RawMessage) (any, error) {
	return func(ctx context.Context, env *Env, raw json.RawMessage) (any, error) {
		p := new(P)
		if err := DecodeParams(raw, p); err != nil {
			return nil, err
		}
		return fn(ctx, env, p)
	}
}

// DecodeParams decodes params into p. Unknown fields are ignored (as in
// LSP); a wrong type is -32602 naming the field.
func DecodeParams(raw json.RawMessage, p any) error {
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	if err := json.Unmarshal(raw, p); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return InvalidParams(te.Field, "expected %s, got %s", jsonType(te.Type.Kind().String()), te.Value)
		case errors.As(err, &te):
			return InvalidParams("", "params must be an object, got %s", te.Value)
		case errors.As(err, &se):
			return InvalidParams("", "params are not valid JSON: %v", err)
		}
		return InvalidParams("", "%v", err)
	}
	return nil
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "a list"
	case "int", "int64", "int32", "uint", "uint16", "uint32", "uint64", "float64":
		return "a number"
	}
	return kind
}

// Error is a reply error with a code and data.
type Error struct {
	Code    int
	Message string
	Data    *protocol.ErrorData
}

func (e *Error) Error() string { return e.Message }

// InvalidParams is -32602 naming the field.
func InvalidParams(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	return &Error{Code: protocol.CodeInvalidParams, Message: msg, Data: &protocol.ErrorData{Category: string(errcat.User)}}
}

func required(field, value string) error {
	if strings.TrimSpace(value) == "" {
		return InvalidParams(field, "required")
	}
	return nil
}

// AsError turns any handler error into a reply error with a code, a
// category and a message that says what to do next. Errors with a code of
// their own (not found, conflict, an unreadable tether.yaml, invalid
// configurations, not supported) keep it; the others get their code from
// their errcat category: user and config -32602, environment
// CodeEnvironment. An error nobody tagged is a bug: -32603 with category
// "bug" (IsBug; the server logs it with its chain).
func AsError(err error) *Error {
	if e := known(err); e != nil {
		return e
	}
	switch c := errcat.Of(err); c {
	case errcat.User, errcat.Config:
		return newError(protocol.CodeInvalidParams, err, c)
	case errcat.Environment:
		return newError(protocol.CodeEnvironment, err, c)
	}
	return bugError(err)
}

// failedError is AsError for the methods that open a tunnel or start an
// app (launch/*, debug/forward and debug/unforward, kubernetes/namespaces;
// they use launchError): a failure that has no code of its own is
// CodeLaunchFailed, whoever can fix it (data.category says who); a bug is
// still -32603.
func failedError(err error) *Error {
	if e := known(err); e != nil {
		return e
	}
	c := errcat.Of(err)
	if c == errcat.Bug {
		return bugError(err)
	}
	return newError(protocol.CodeLaunchFailed, err, c)
}

// bugError is the reply to an error nobody tagged: a bug in Tether.
func bugError(err error) *Error {
	e := newError(protocol.CodeInternalError, err, errcat.Bug)
	e.Message += " (this is a bug in Tether; the backend log has details)"
	return e
}

// IsBug reports whether a reply error stands for a bug in Tether.
func (e *Error) IsBug() bool { return e.Code == protocol.CodeInternalError }

func newError(code int, err error, c errcat.Category) *Error {
	return &Error{Code: code, Message: err.Error(), Data: &protocol.ErrorData{Category: string(c)}}
}

// known maps the errors that have a code of their own; nil for the others.
func known(err error) *Error {
	var e *Error
	var ps workspace.Problems
	var se *workspace.SyntaxError
	var fe *workspace.FileError
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &ps):
		return &Error{Code: protocol.CodeInvalidParams, Message: ps.Error(),
			Data: &protocol.ErrorData{Category: string(errcat.Config), Problems: ps}}
	case errors.Is(err, workspace.ErrConflict):
		return newError(protocol.CodeConflict, err, errcat.User)
	case errors.Is(err, workspace.ErrNotFound), errors.Is(err, launch.ErrUnknownSession):
		return newError(protocol.CodeNotFound, err, errcat.User)
	case errors.As(err, &se), errors.As(err, &fe):
		return newError(protocol.CodeWorkspaceInvalid, err, errcat.Config)
	case errors.Is(err, launch.ErrNotSupported):
		return newError(protocol.CodeNotSupported, err, errcat.User)
	}
	return nil
}
