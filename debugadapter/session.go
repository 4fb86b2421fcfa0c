package debugadapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"runtime/debug"
	"sort"
	"time"

	"github.com/google/go-dap"

	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/internal/framing"
	"github.com/tether-dev/tether/progress"
	"github.com/tether-dev/tether/tunnel"
)

// Error IDs of the error responses the bridge sends itself (body.error.id).
const (
	FailedToLaunch = 3000 // launch requests: the bridge only attaches
	FailedToAttach = 3001 // bad attach arguments, tunnel or target failures
	NotAttached    = 3002 // a request that needs the remote adapter before attach
	ConnectionLost = 3003 // the remote adapter went away
	NoAnswer       = 3004 // the remote adapter did not answer disconnect in time
	InternalError  = 8888 // a bug in the bridge
)

// Defaults of Config's timeouts.
const (
	DefaultDialTimeout       = 20 * time.Second
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultDisconnectTimeout = 5 * time.Second
)

// localCapabilities answer the IDE's initialize before a target is known;
// the remote adapter's own are sent as a capabilities event after attach.
var localCapabilities = dap.Capabilities{
	SupportsConfigurationDoneRequest:  true,
	SupportsFunctionBreakpoints:       true,
	SupportsConditionalBreakpoints:    true,
	SupportsHitConditionalBreakpoints: true,
	SupportsEvaluateForHovers:         true,
	SupportsSetVariable:               true,
	SupportsExceptionInfoRequest:      true,
	SupportsDelayedStackTraceLoading:  true,
	SupportsLogPoints:                 true,
	SupportsClipboardContext:          true,
	SupportTerminateDebuggee:          true,
}

// session is one IDE connection. Everything but the readers runs on the
// Serve goroutine.
type session struct {
	cfg Config
	log *slog.Logger
	ide *writer

	initialized bool
	initRaw     []byte // the IDE's initialize request, replayed to the remote

	target  string
	tun     tunnel.Tunnel
	unwatch func()
	conn    net.Conn
	remote  *writer
	// remoteDone stops the remote reader.
	remoteDone chan struct{}
	fromRem    chan []byte
	remErr     chan error
	paths      Paths

	inflight       map[int]string // IDE request seq -> command, sent to the remote
	reverse        map[int]int    // IDE-facing seq of a remote request -> its remote seq
	lost           bool           // the remote is gone
	sentTerminated bool
	disconnectSeq  int // seq of the IDE's disconnect, once forwarded
	disconnectBy   <-chan time.Time
}

// Serve runs one DAP session on rw until the IDE disconnects, rw ends or
// ctx is done. It closes the remote connection and the tunnel it opened;
// rw is the caller's to close.
func Serve(ctx context.Context, rw io.ReadWriter, cfg Config) error {
	cfg = cfg.withDefaults()
	s := &session{cfg: cfg, log: cfg.Logger, ide: newWriter(rw, true),
		inflight: map[int]string{}, reverse: map[int]int{}}
	defer s.closeRemote()

	done := make(chan struct{})
	defer close(done)
	fromIDE, ideErr := make(chan []byte), make(chan error, 1)
	go readLoop(newReader(rw), fromIDE, ideErr, done)

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-ideErr:
			if errors.Is(err, io.EOF) {
				s.log.Info("IDE closed the DAP connection")
				return nil
			}
			return fmt.Errorf("reading from the IDE: %w", err)
		case body := <-fromIDE:
			if s.handleIDE(ctx, body) {
				return nil
			}
		case body := <-s.fromRem:
			if s.handleRemote(body) {
				return nil
			}
		case err := <-s.remErr:
			if s.remoteGone(err) {
				return nil
			}
		case <-s.disconnectBy:
			s.log.Warn("remote adapter did not answer disconnect", "target", s.target)
			s.errorResponse(s.disconnectSeq, "disconnect", NoAnswer,
				fmt.Sprintf("the debug adapter at %s did not answer disconnect within %s; the connection is closed", s.target, s.cfg.DisconnectTimeout))
			return nil
		}
	}
}

// readLoop feeds messages from r to out until an error, which goes to errc.
func readLoop(r *framing.Reader, out chan<- []byte, errc chan<- error, done <-chan struct{}) {
	for {
		body, err := readMessage(r)
		if err != nil {
			errc <- err
			return
		}
		select {
		case out <- body:
		case <-done:
			return
		}
	}
}

// handleIDE handles one message from the IDE and reports whether the
// session is over. A panic becomes an internal-error reply.
func (s *session) handleIDE(ctx context.Context, body []byte) (end bool) {
	p, err := peekMessage(body)
	if err != nil {
		s.log.Warn("ignoring a message from the IDE", "error", err)
		return false
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("DAP bridge panicked", "command", p.Command, "panic", r, "stack", string(debug.Stack()))
			if p.Type == "request" {
				s.errorResponse(p.Seq, p.Command, InternalError,
					fmt.Sprintf("internal error in the tether DAP bridge handling %s: %v (this is a bug; see the log)", p.Command, r))
			}
			end = false
		}
	}()
	switch p.Type {
	case "response": // to a reverse request (runInTerminal, startDebugging)
		if rseq, ok := s.reverse[p.RequestSeq]; ok && !s.lost {
			delete(s.reverse, p.RequestSeq)
			body, _ = setTopLevelInt(body, "request_seq", rseq)
			s.sendRemote(body)
		}
		return false
	case "request":
	default:
		return false
	}
	if s.conn == nil && !s.lost {
		return s.beforeAttach(ctx, p, body)
	}
	if s.lost {
		if p.Command == "disconnect" {
			s.respond(p.Seq, p.Command, nil)
			return true
		}
		s.errorResponse(p.Seq, p.Command, ConnectionLost,
			fmt.Sprintf("the debug adapter at %s is gone: restart the debug session", s.target))
		return false
	}
	switch p.Command {
	case "initialize", "attach", "launch":
		s.errorResponse(p.Seq, p.Command, FailedToAttach, fmt.Sprintf("%s: this session is already attached to %s", p.Command, s.target))
		return false
	case "disconnect":
		s.disconnectSeq = p.Seq
		s.disconnectBy = time.After(s.cfg.DisconnectTimeout)
	}
	s.inflight[p.Seq] = p.Command
	s.sendRemote(s.paths.translate(body, toRemote))
	return false
}

// beforeAttach answers what the bridge handles itself.
func (s *session) beforeAttach(ctx context.Context, p peek, body []byte) bool {
	switch p.Command {
	case "initialize":
		if s.initialized {
			s.errorResponse(p.Seq, p.Command, FailedToAttach, "initialize was already sent in this session")
			return false
		}
		s.initialized, s.initRaw = true, body
		s.respond(p.Seq, p.Command, localCapabilities)
	case "attach":
		if !s.initialized {
			s.errorResponse(p.Seq, p.Command, FailedToAttach, "attach before initialize: send initialize first")
			return false
		}
		if err := s.attach(ctx, p, body); err != nil {
			if errcat.Of(err) == errcat.Bug {
				s.log.Error("attach failed: this is a bug", "error", err)
			} else {
				s.log.Warn("attach failed", "error", err, "category", errcat.Of(err))
			}
			s.closeRemote()
			s.errorResponse(p.Seq, p.Command, FailedToAttach, err.Error())
		}
	case "launch":
		s.errorResponse(p.Seq, p.Command, FailedToLaunch,
			`tether dap attaches to a debug adapter that runs in the cloud: use "request": "attach" with proxy and target (host:port of dlv --headless, dlv dap or debugpy)`)
	case "disconnect", "terminate":
		s.respond(p.Seq, p.Command, nil)
		return p.Command == "disconnect"
	default:
		s.errorResponse(p.Seq, p.Command, NotAttached, fmt.Sprintf("%s before attach: attach to a debug adapter first", p.Command))
	}
	return false
}

// attachArgs are the attach arguments the bridge consumes.
type attachArgs struct {
	Proxy          string `json:"proxy"`
	Target         string `json:"target"`
	SubstitutePath Paths  `json:"substitutePath"`
}

// attach opens the tunnel, dials the target, replays initialize and
// forwards attach without the bridge's own arguments.
func (s *session) attach(ctx context.Context, p peek, body []byte) error {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		return errcat.User.Newf("attach request is not valid JSON: %v", err)
	}
	args := map[string]json.RawMessage{}
	if raw, ok := req["arguments"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &args); err != nil {
			return errcat.User.New("attach arguments must be an object")
		}
	}
	var a attachArgs
	for name, dst := range map[string]any{"proxy": &a.Proxy, "target": &a.Target, "substitutePath": &a.SubstitutePath} {
		if raw, ok := args[name]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return errcat.User.Newf("attach argument %s: %v", name, jsonTypeError(err))
			}
		}
		delete(args, name)
	}
	switch {
	case a.Proxy == "":
		return errcat.User.New(`attach argument proxy is required: the name of a proxy in tether.yaml`)
	case a.Target == "":
		return errcat.User.New(`attach argument target is required: "host:port" of the debug adapter as the proxy machine sees it (dlv --headless --accept-multiclient, dlv dap, debugpy --listen)`)
	}
	if _, port, err := net.SplitHostPort(a.Target); err != nil || port == "" {
		return errcat.User.Newf(`attach argument target %q must be "host:port"`, a.Target)
	}
	dir := ""
	if s.cfg.Workspace != nil {
		dir = s.cfg.Workspace.Dir
	}
	paths, err := a.SubstitutePath.resolve(dir)
	if err != nil {
		return errcat.User.Newf("attach argument %v", err)
	}
	s.paths, s.target = paths, a.Target
	log := s.log.With("proxy", a.Proxy, "target", a.Target)

	// Progress of the tunnel goes to the debug console.
	pctx := progress.With(ctx, progress.Func(func(msg string, _ int) {
		s.event("output", map[string]any{"category": "console", "output": "tether: " + msg + "\n"})
	}))
	tun, err := s.cfg.OpenTunnel(pctx, a.Proxy)
	if err != nil {
		return errcat.Environment.Newf("cannot open the tunnel to proxy %s: %w", a.Proxy, err) // inner tags win
	}
	s.tun = tun
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	conn, err := tun.Dial(dctx, "tcp", a.Target)
	cancel()
	if err != nil {
		return errcat.Environment.Newf("cannot connect to the debug adapter: %w (is it listening there, e.g. dlv --headless --listen %s --accept-multiclient?)", err, a.Target)
	}
	s.conn, s.remote = conn, newWriter(conn, false)
	s.unwatch = tun.Watch(func(e tunnel.Event) {
		if e.State == tunnel.Closed {
			_ = conn.Close() // the reader reports it
		}
	})
	fromRem, remErr := make(chan []byte, 16), make(chan error, 1)
	go readLoop(newReader(conn), fromRem, remErr, s.doneChan())

	// Replay initialize; wait for its answer, keeping early events.
	if err := s.remote.send(s.initRaw); err != nil {
		return errcat.Environment.Newf("debug adapter at %s: %v", a.Target, err)
	}
	initSeq, _ := peekMessage(s.initRaw)
	timer := time.NewTimer(s.cfg.HandshakeTimeout)
	defer timer.Stop()
	var early [][]byte
	var remoteCaps map[string]any
	for remoteCaps == nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return errcat.Environment.Newf("%s accepted the connection but sent no DAP reply within %s: is it a debug adapter (dlv --headless --accept-multiclient, dlv dap, debugpy --listen)?", a.Target, s.cfg.HandshakeTimeout)
		case err := <-remErr:
			if errors.Is(err, ErrNotDAP) {
				return errcat.Environment.Newf("%s does not speak the Debug Adapter Protocol (%v): is it a debug adapter (dlv --headless --accept-multiclient, dlv dap, debugpy --listen)?", a.Target, err)
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return errcat.Environment.Newf("%s closed the connection during the DAP handshake: is it a debug adapter that accepts another client (dlv needs --accept-multiclient)?", a.Target)
			}
			return errcat.Environment.Newf("reading from %s: %v", a.Target, err)
		case msg := <-fromRem:
			mp, err := peekMessage(msg)
			if err != nil {
				return errcat.Environment.Newf("%s does not speak the Debug Adapter Protocol (%v)", a.Target, err)
			}
			if mp.Type == "response" && mp.RequestSeq == initSeq.Seq {
				var r struct {
					Success bool           `json:"success"`
					Message string         `json:"message"`
					Body    map[string]any `json:"body"`
				}
				if err := json.Unmarshal(msg, &r); err != nil {
					return errcat.Environment.Newf("%s sent a malformed initialize response: %v", a.Target, err)
				}
				if !r.Success {
					return errcat.Environment.Newf("the debug adapter at %s refused initialize: %s", a.Target, r.Message)
				}
				remoteCaps = r.Body
				if remoteCaps == nil {
					remoteCaps = map[string]any{}
				}
				continue
			}
			early = append(early, msg)
		}
	}
	s.fromRem, s.remErr = fromRem, remErr
	if diff := capabilityChanges(remoteCaps); len(diff) > 0 {
		s.event("capabilities", map[string]any{"capabilities": diff})
	}
	for _, msg := range early {
		s.handleRemote(msg)
	}
	args2, err := json.Marshal(args)
	if err != nil {
		return err
	}
	req["arguments"] = args2
	attach, err := json.Marshal(req)
	if err != nil {
		return err
	}
	log.Info("attached: forwarding attach to the remote adapter", "substitutePath", len(paths))
	s.inflight[p.Seq] = p.Command
	s.sendRemote(attach)
	return nil
}

// capabilityChanges lists the remote adapter's capabilities that differ
// from the ones the bridge answered initialize with. A capability it
// claimed that the remote lacks is turned off explicitly: IDEs merge the
// capabilities event into what they have.
func capabilityChanges(remote map[string]any) map[string]any {
	var local map[string]any
	b, _ := json.Marshal(localCapabilities)
	_ = json.Unmarshal(b, &local)
	diff := map[string]any{}
	for k, v := range remote {
		if !reflect.DeepEqual(local[k], v) {
			diff[k] = v
		}
	}
	for k, v := range local {
		if _, ok := remote[k]; !ok {
			if _, isBool := v.(bool); isBool {
				diff[k] = false
			}
		}
	}
	return diff
}

func jsonTypeError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("expected %s, got %s", te.Type, te.Value)
	}
	return err.Error()
}

// handleRemote relays one message of the remote adapter to the IDE and
// reports whether the session is over (the answer to disconnect).
func (s *session) handleRemote(body []byte) bool {
	p, err := peekMessage(body)
	if err != nil {
		s.log.Warn("ignoring a message from the remote adapter", "error", err)
		return false
	}
	body = s.paths.translate(body, toLocal)
	switch p.Type {
	case "response":
		delete(s.inflight, p.RequestSeq)
		s.sendIDE(body)
		if s.disconnectSeq != 0 && p.RequestSeq == s.disconnectSeq {
			s.log.Info("disconnected from the remote adapter", "target", s.target)
			return true
		}
	case "event":
		if p.Event == "terminated" {
			s.sentTerminated = true
		}
		s.sendIDE(body)
	case "request":
		seq := s.sendIDE(body)
		s.reverse[seq] = p.Seq
	}
	return false
}

// remoteGone ends the remote side: requests in flight get an error, the IDE
// a terminated event. It reports whether the session is over.
func (s *session) remoteGone(err error) bool {
	if s.lost {
		return false
	}
	s.lost = true
	s.closeRemote()
	if s.disconnectSeq != 0 {
		// Closing is the answer to disconnect for some adapters.
		s.respond(s.disconnectSeq, "disconnect", nil)
		return true
	}
	s.log.Warn("remote adapter connection lost", "target", s.target, "error", err)
	msg := fmt.Sprintf("tether: the debug adapter at %s closed the connection", s.target)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		msg += ": " + err.Error()
	}
	s.event("output", map[string]any{"category": "important", "output": msg + "\n"})
	seqs := make([]int, 0, len(s.inflight))
	for seq := range s.inflight {
		seqs = append(seqs, seq)
	}
	sort.Ints(seqs)
	for _, seq := range seqs {
		s.errorResponse(seq, s.inflight[seq], ConnectionLost, fmt.Sprintf("the debug adapter at %s closed the connection", s.target))
	}
	s.inflight = map[int]string{}
	if !s.sentTerminated {
		s.sentTerminated = true
		s.event("terminated", nil)
	}
	return false
}

// sendRemote sends to the remote adapter; a failure shows up on its reader.
func (s *session) sendRemote(body []byte) {
	if err := s.remote.send(body); err != nil {
		s.log.Warn("writing to the remote adapter", "error", err)
		if s.conn != nil {
			_ = s.conn.Close()
		}
	}
}

// sendIDE sends to the IDE and returns the seq it was given.
func (s *session) sendIDE(body []byte) int {
	seq, err := s.ide.sendSeq(body)
	if err != nil {
		s.log.Warn("writing to the IDE", "error", err)
	}
	return seq
}

func (s *session) respond(requestSeq int, command string, body any) {
	m := map[string]any{"seq": 0, "type": "response", "request_seq": requestSeq, "command": command, "success": true}
	if body != nil {
		m["body"] = body
	}
	s.sendJSON(m)
}

func (s *session) errorResponse(requestSeq int, command string, id int, msg string) {
	s.sendJSON(map[string]any{"seq": 0, "type": "response", "request_seq": requestSeq, "command": command,
		"success": false, "message": msg,
		"body": map[string]any{"error": map[string]any{"id": id, "format": msg, "showUser": true}}})
}

func (s *session) event(name string, body any) {
	m := map[string]any{"seq": 0, "type": "event", "event": name}
	if body != nil {
		m["body"] = body
	}
	s.sendJSON(m)
}

func (s *session) sendJSON(m map[string]any) {
	b, err := json.Marshal(m)
	if err != nil {
		s.log.Error("encoding a DAP message", "error", err)
		return
	}
	s.sendIDE(b)
}

// doneChan is closed when the remote side is closed, so its reader stops.
func (s *session) doneChan() <-chan struct{} {
	if s.remoteDone == nil {
		s.remoteDone = make(chan struct{})
	}
	return s.remoteDone
}

// closeRemote closes the connection to the remote adapter and the tunnel.
func (s *session) closeRemote() {
	if s.unwatch != nil {
		s.unwatch()
		s.unwatch = nil
	}
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn, s.remote = nil, nil
	}
	if s.remoteDone != nil {
		close(s.remoteDone)
		s.remoteDone = nil
	}
	if s.tun != nil {
		if err := s.tun.Close(); err != nil {
			s.log.Debug("closing the tunnel", "error", err)
		}
		s.tun = nil
	}
	s.fromRem, s.remErr = nil, nil
}
