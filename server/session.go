package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.lsp.dev/jsonrpc2"

	"github.com/tether-dev/tether/handlers"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/launch"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/protocol"
	"github.com/tether-dev/tether/workspace"
)

// Session states.
const (
	stateNew int32 = iota
	stateInitialized
	stateShutdown
)

// session is one client connection: its lifecycle, its workspace, its
// cancellation and its notifier.
type session struct {
	srv    *Server
	id     int64
	conn   jsonrpc2.Conn
	stream *stream
	// work is the parent of all handler work: cancelled when the client
	// goes away or sends shutdown. (The connection's own context must stay
	// alive until exit is read.)
	work   context.Context
	cancel context.CancelFunc
	state  atomic.Int32
	log    *slog.Logger

	mu       sync.Mutex
	env      *handlers.Env
	inflight map[jsonrpc2.ID]context.CancelFunc

	exitOnce sync.Once
	exited   chan int // exit code, when the client sent exit
}

type sessionClient struct{ s *session }

func (c sessionClient) Notify(ctx context.Context, method string, params any) error {
	return c.s.conn.Notify(context.WithoutCancel(ctx), method, params)
}

func (c sessionClient) Call(ctx context.Context, method string, params, result any) error {
	_, err := c.s.conn.Call(ctx, method, params, result)
	return err
}

// serve runs the session until the client exits or goes away and returns
// the process exit code an LSP server uses: 0 after shutdown, 1 otherwise.
// With initTimeout > 0 a client whose initialize has not succeeded by then
// is disconnected.
func (s *session) serve(ctx context.Context, rwc io.ReadWriteCloser, initTimeout time.Duration) int {
	s.stream = newStream(rwc, min(DefaultMaxUninitializedBytes, s.srv.opts.MaxMessageBytes), s.cancel)
	s.conn = jsonrpc2.NewConn(s.stream, jsonrpc2.WithCodec(stdCodec{}), jsonrpc2.WithPreempter(preempter{s}))
	s.log = slog.New(newClientLogHandler(s.srv.opts.Logger.Handler(), s, s.srv.opts.LogLevel)).With("session", s.id)
	if initTimeout > 0 {
		t := time.AfterFunc(initTimeout, func() {
			if s.state.Load() == stateNew {
				s.srv.opts.Logger.Warn("client did not initialize in time; closing its connection",
					"session", s.id, "timeout", initTimeout)
				s.exitOnce.Do(func() { s.exited <- 1 })
			}
		})
		defer t.Stop()
	}
	s.conn.Go(context.Background(), s.handle)
	code := 1
	select {
	case code = <-s.exited:
	case <-s.conn.Done():
		if s.state.Load() == stateShutdown {
			code = 0
		}
	case <-ctx.Done():
	}
	s.cancel()
	s.closeAll()
	_ = rwc.Close()
	// A read blocked on stdin is not always woken by Close; the process
	// exits anyway, so do not wait for it for long.
	select {
	case <-s.conn.Done():
	case <-time.After(time.Second):
	}
	return code
}

// watchIDE ends the session when the IDE process of initialize's processId
// is gone (with stdio that ends the backend; a --listen server goes on
// serving its other clients).
func (s *session) watchIDE(pid int) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.work.Done():
			return
		case <-t.C:
		}
		if !processAlive(pid) {
			s.log.Warn("IDE process is gone; ending its session", "pid", pid)
			s.exitOnce.Do(func() { s.exited <- 1 })
			return
		}
	}
}

// closeAll ends everything the session started.
func (s *session) closeAll() {
	s.mu.Lock()
	env := s.env
	s.mu.Unlock()
	if env != nil {
		env.Launches.CloseAll()
	}
}

// hooks send a session's events to its client.
func (s *session) hooks() launch.Hooks {
	notify := func(method string, params any) {
		_ = s.conn.Notify(context.Background(), method, params)
	}
	return launch.Hooks{
		Prompts:        handlers.NewPrompts(sessionClient{s}),
		OnState:        func(st protocol.TunnelStatus) { notify(protocol.MethodInterconnectStatus, st) },
		OnConn:         func(r protocol.ConnectionRecord) { notify(protocol.MethodInterconnectConnection, r) },
		OnCall:         func(r protocol.CallRecord) { notify(protocol.MethodInterconnectCall, r) },
		OnLaunchState:  func(p protocol.LaunchStateParams) { notify(protocol.MethodLaunchState, p) },
		OnLaneFallback: func(p protocol.LaneFallbackParams) { notify(protocol.MethodInterconnectLaneFallback, p) },
		OnOutput: func(id, stream string, data []byte) {
			notify(protocol.MethodLaunchOutput, protocol.LaunchOutputParams{LaunchID: id, Stream: stream, Text: string(data)})
		},
		Logger: s.log,
	}
}

type preempter struct{ s *session }

// Preempt handles $/cancelRequest on the read loop, ahead of everything.
func (p preempter) Preempt(ctx context.Context, req *jsonrpc2.Request) (any, error) {
	if req.Method() != protocol.MethodCancelRequest {
		return nil, jsonrpc2.ErrNotHandled
	}
	var cp protocol.CancelParams
	if json.Unmarshal(req.Params(), &cp) == nil {
		if id, ok := parseID(cp.ID); ok {
			p.s.mu.Lock()
			cancel := p.s.inflight[id]
			p.s.mu.Unlock()
			if cancel != nil {
				cancel()
			}
		}
	}
	return struct{}{}, nil
}

// track gives a request its own context, a child of the session's work
// (never of the pooled request context, which must not escape the
// handler), and registers it for $/cancelRequest.
func (s *session) track(req *jsonrpc2.Request) (context.Context, func()) {
	ctx, cancel := context.WithCancel(s.work)
	if !req.IsCall() {
		return ctx, cancel
	}
	id := req.ID()
	s.mu.Lock()
	s.inflight[id] = cancel
	s.mu.Unlock()
	return ctx, func() {
		s.mu.Lock()
		delete(s.inflight, id)
		s.mu.Unlock()
		cancel()
	}
}

// handle answers one message. A notification has nobody to answer, so its
// failure is logged (backend log and window/logMessage) and never ends the
// connection (the library fails the connection on a notification error).
func (s *session) handle(rctx context.Context, req *jsonrpc2.Request) (any, error) {
	res, err := s.dispatch(rctx, req)
	if err != nil && !req.IsCall() {
		s.log.Error("notification failed", "method", validUTF8(req.Method()), "err", validUTF8(err.Error()))
		return nil, nil
	}
	return res, err
}

func (s *session) dispatch(rctx context.Context, req *jsonrpc2.Request) (result any, err error) {
	method := req.Method()
	switch method {
	case protocol.MethodInitialize:
		return s.initialize(req)
	case protocol.MethodInitialized:
		return nil, nil
	case protocol.MethodShutdown:
		if s.state.Load() == stateNew {
			return nil, rpcError(protocol.CodeServerNotInitialized, "shutdown before initialize", "")
		}
		s.state.Store(stateShutdown)
		s.cancel() // stops everything in flight; exit follows
		s.closeAll()
		return nil, nil
	case protocol.MethodExit:
		code := 1
		if s.state.Load() == stateShutdown {
			code = 0
		}
		s.exitOnce.Do(func() { s.exited <- code })
		return nil, nil
	}
	switch s.state.Load() {
	case stateNew:
		if !req.IsCall() {
			return nil, nil
		}
		return nil, rpcError(protocol.CodeServerNotInitialized, "the server is not initialized: send initialize first", "user")
	case stateShutdown:
		if !req.IsCall() {
			return nil, nil
		}
		return nil, rpcError(protocol.CodeInvalidState, "the server is shutting down: only exit is accepted", "user")
	}
	m, ok := handlers.Lookup(method)
	if !ok {
		if !req.IsCall() {
			return nil, nil // unknown notifications are ignored, as in LSP
		}
		return nil, rpcError(protocol.CodeMethodNotFound, fmt.Sprintf("method not found: %s", method), "user")
	}
	if m.Async {
		jsonrpc2.Async(rctx)
	}
	ctx, done := s.track(req)
	defer done()
	params := req.Params()
	if tok := workDoneToken(params); tok != nil {
		rep := &progressReporter{s: s, token: tok}
		rep.begin(method)
		defer rep.end()
		ctx = progress.With(ctx, rep)
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("handler panicked", "method", method, "panic", r, "stack", string(debug.Stack()))
			result, err = nil, rpcError(protocol.CodeInternalError,
				fmt.Sprintf("internal error in %s: %v (this is a bug; the backend log has details)", method, r), "bug")
		}
	}()
	s.mu.Lock()
	env := s.env
	s.mu.Unlock()
	res, herr := m.Handle(ctx, env, json.RawMessage(params))
	if herr != nil {
		if ctx.Err() != nil {
			return nil, rpcError(protocol.CodeRequestCancelled, "request cancelled", "user")
		}
		return nil, s.replyError(method, herr)
	}
	return res, nil
}

// replyError is the reply to a failed request (handlers.AsError). A bug
// (an error nobody tagged with its category) is logged with its chain, so
// that a developer can find where it was made and tag it there.
func (s *session) replyError(method string, err error) *jsonrpc2.Error {
	e := handlers.AsError(err)
	if e.IsBug() {
		s.log.Error("request failed with an untagged error: a bug (tag it with its errcat category where it is made)",
			"method", validUTF8(method), "err", validUTF8(err.Error()), "chain", errcat.Chain(err))
	}
	return toRPC(e)
}

func (s *session) initialize(req *jsonrpc2.Request) (any, error) {
	if s.state.Load() != stateNew {
		return nil, rpcError(protocol.CodeInvalidState, "initialize was already sent on this connection", "user")
	}
	var p protocol.InitializeParams
	if err := handlers.DecodeParams(json.RawMessage(req.Params()), &p); err != nil {
		return nil, s.replyError(protocol.MethodInitialize, err)
	}
	if tok := s.srv.opts.Token; tok != "" {
		var got string
		if p.InitializationOptions != nil {
			got = p.InitializationOptions.Token
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			s.log.Warn("client refused: wrong or missing token")
			// Close once the error reply is out; nothing else is answered.
			s.state.Store(stateShutdown)
			time.AfterFunc(time.Second, func() { s.cancel(); _ = s.conn.Close() })
			return nil, rpcError(protocol.CodeUnauthorized,
				"initializationOptions.token is missing or wrong: read it from the token file that tether serve printed", "user")
		}
	}
	dir, err := s.srv.workspaceDir(&p)
	if err != nil {
		return nil, s.replyError(protocol.MethodInitialize, err)
	}
	if p.ProcessID != nil && *p.ProcessID > 0 {
		go s.watchIDE(*p.ProcessID)
	}
	s.mu.Lock()
	ws := &workspace.Workspace{Dir: dir, Logger: s.log}
	for _, warning := range ws.PermissionWarnings() {
		s.log.Warn(warning)
	}
	h := s.hooks()
	s.env = &handlers.Env{Workspace: ws, Client: sessionClient{s}, Log: s.log,
		Launches: launch.NewManager(ws, h), Prompts: h.Prompts}
	s.mu.Unlock()
	s.stream.setMax(s.srv.opts.MaxMessageBytes)
	s.state.Store(stateInitialized)
	client := "unknown client"
	if p.ClientInfo != nil {
		client = p.ClientInfo.Name + " " + p.ClientInfo.Version
	}
	s.log.Info("client initialized", "client", client, "workspace", dir)
	return protocol.InitializeResult{
		ServerInfo:      protocol.ServerInfo{Name: "tether", Version: s.srv.opts.Version},
		ProtocolVersion: protocol.ProtocolVersion,
		Capabilities: protocol.ServerCapabilities{
			Workspace:       dir,
			Methods:         append(handlers.Names(), protocol.MethodCancelRequest),
			RunConfigTypes:  handlers.LaunchTypes(),
			ProxyKinds:      handlers.ProxyKinds(),
			MaxMessageBytes: s.srv.opts.MaxMessageBytes,
		},
	}, nil
}

// workspaceDir finds the workspace: --workspace, else the first workspace
// folder, rootUri or rootPath of initialize.
func (srv *Server) workspaceDir(p *protocol.InitializeParams) (string, error) {
	dir := srv.opts.Workspace
	field := "--workspace"
	if dir == "" {
		var err error
		switch {
		case len(p.WorkspaceFolders) > 0:
			field = "workspaceFolders[0].uri"
			dir, err = fileURI(p.WorkspaceFolders[0].URI)
		case p.RootURI != "":
			field = "rootUri"
			dir, err = fileURI(p.RootURI)
		case p.RootPath != "":
			field = "rootPath"
			dir = p.RootPath
		default:
			return "", handlers.InvalidParams("rootUri", "required: send rootUri or workspaceFolders, or start tether serve with --workspace DIR")
		}
		if err != nil {
			return "", handlers.InvalidParams(field, "%v", err)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", handlers.InvalidParams(field, "%v", err)
	}
	st, err := os.Stat(abs)
	if err != nil || !st.IsDir() {
		return "", handlers.InvalidParams(field, "%s is not a directory", abs)
	}
	return abs, nil
}

func fileURI(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "file" {
		return "", fmt.Errorf("%q is not a file:// URI", s)
	}
	return u.Path, nil
}

func workDoneToken(params []byte) any {
	if len(params) == 0 {
		return nil
	}
	var p protocol.WorkDoneProgressParams
	if json.Unmarshal(params, &p) != nil {
		return nil
	}
	switch p.WorkDoneToken.(type) {
	case string, float64:
		return p.WorkDoneToken
	}
	return nil
}

type progressReporter struct {
	s     *session
	token any
}

func (r *progressReporter) send(v protocol.WorkDoneProgress) {
	_ = r.s.conn.Notify(context.Background(), protocol.MethodProgress, protocol.ProgressParams{Token: r.token, Value: v})
}

func (r *progressReporter) begin(title string) {
	r.send(protocol.WorkDoneProgress{Kind: "begin", Title: title})
}

func (r *progressReporter) Report(message string, percent int) {
	v := protocol.WorkDoneProgress{Kind: "report", Message: message}
	if percent >= 0 {
		v.Percentage = &percent
	}
	r.send(v)
}

func (r *progressReporter) end() { r.send(protocol.WorkDoneProgress{Kind: "end"}) }

func rpcError(code int, msg, category string) *jsonrpc2.Error {
	e := jsonrpc2.NewError(jsonrpc2.Code(code), validUTF8(msg))
	if category != "" {
		e.Data, _ = json.Marshal(protocol.ErrorData{Category: category})
	}
	return e
}

func toRPC(e *handlers.Error) *jsonrpc2.Error {
	je := jsonrpc2.NewError(jsonrpc2.Code(e.Code), validUTF8(e.Message))
	if e.Data != nil {
		je.Data, _ = json.Marshal(e.Data)
	}
	return je
}

// stdCodec encodes payloads with encoding/json so that the wire shape
// follows the struct tags as every other Go JSON user reads them.
type stdCodec struct{}

func (stdCodec) Marshal(v any) ([]byte, error) {
	if raw, ok := v.(jsonrpc2.RawMessage); ok {
		if raw == nil {
			return []byte("null"), nil
		}
		return raw, nil
	}
	return json.Marshal(v)
}

func (stdCodec) Unmarshal(data []byte, v any) error {
	if raw, ok := v.(*jsonrpc2.RawMessage); ok {
		*raw = append((*raw)[:0], data...)
		return nil
	}
	return json.Unmarshal(data, v)
}
