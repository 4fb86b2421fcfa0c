// Package daptest is a Debug Adapter Protocol client for tests (go-dap): it
// sends requests and waits for responses and events with
// ExpectXxxResponse(t)-style helpers.
package daptest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-dap"
)

// Unknown is a message that go-dap cannot decode (a vendor extension).
type Unknown struct {
	dap.ProtocolMessage
	Command string `json:"command"`
	Event   string `json:"event"`
}

type received struct {
	msg dap.Message
	raw []byte
}

// Client talks DAP to an adapter over a pair of streams.
type Client struct {
	// Timeout bounds every Expect; default 30s.
	Timeout time.Duration

	w   io.Writer
	c   io.Closer
	in  chan received
	err chan error

	mu      sync.Mutex
	seq     int
	history []string // what was received, for failure messages
	lastRaw []byte
}

// NewClient reads messages from r in the background and writes requests to
// w; Close closes c.
func NewClient(r io.Reader, w io.Writer, c io.Closer) *Client {
	cl := &Client{Timeout: 30 * time.Second, w: w, c: c, in: make(chan received, 1024), err: make(chan error, 1)}
	go cl.read(bufio.NewReader(r))
	return cl
}

func (c *Client) read(r *bufio.Reader) {
	for {
		raw, err := dap.ReadBaseMessage(r)
		if err != nil {
			c.err <- err
			close(c.in)
			return
		}
		msg, err := dap.DecodeProtocolMessage(raw)
		if err != nil {
			u := &Unknown{}
			if jerr := json.Unmarshal(raw, u); jerr != nil {
				c.err <- fmt.Errorf("undecodable message %s: %v", raw, jerr)
				close(c.in)
				return
			}
			msg = u
		}
		c.in <- received{msg, raw}
	}
}

// Close closes the write side.
func (c *Client) Close() error {
	if c.c == nil {
		return nil
	}
	return c.c.Close()
}

// Send sends a request (or a response to a reverse request), setting its
// seq, and returns the seq.
func (c *Client) Send(m dap.Message) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	v := reflect.ValueOf(m).Elem()
	if f := v.FieldByName("Seq"); f.IsValid() && f.CanSet() {
		f.SetInt(int64(c.seq))
	}
	if err := dap.WriteProtocolMessage(c.w, m); err != nil {
		c.history = append(c.history, "send error: "+err.Error())
	}
	return c.seq
}

// SendRaw sends a message body as it is.
func (c *Client) SendRaw(body []byte) error {
	return dap.WriteBaseMessage(c.w, body)
}

func request(command string) dap.Request {
	return dap.Request{ProtocolMessage: dap.ProtocolMessage{Type: "request"}, Command: command}
}

// InitializeRequest sends initialize as VS Code does.
func (c *Client) InitializeRequest() int {
	return c.Send(&dap.InitializeRequest{Request: request("initialize"), Arguments: dap.InitializeRequestArguments{
		ClientID: "daptest", AdapterID: "tether", PathFormat: "path", LinesStartAt1: true, ColumnsStartAt1: true,
		SupportsVariableType: true, SupportsRunInTerminalRequest: true}})
}

// AttachRequest sends attach with args as they are.
func (c *Client) AttachRequest(args map[string]any) int {
	raw, _ := json.Marshal(args)
	return c.Send(&dap.AttachRequest{Request: request("attach"), Arguments: raw})
}

// LaunchRequest sends launch.
func (c *Client) LaunchRequest(args map[string]any) int {
	raw, _ := json.Marshal(args)
	return c.Send(&dap.LaunchRequest{Request: request("launch"), Arguments: raw})
}

// SetBreakpointsRequest sets line breakpoints in the file at path.
func (c *Client) SetBreakpointsRequest(path string, lines ...int) int {
	bps := make([]dap.SourceBreakpoint, len(lines))
	for i, l := range lines {
		bps[i].Line = l
	}
	return c.Send(&dap.SetBreakpointsRequest{Request: request("setBreakpoints"), Arguments: dap.SetBreakpointsArguments{
		Source: dap.Source{Path: path}, Breakpoints: bps}})
}

// ConfigurationDoneRequest ends the configuration sequence.
func (c *Client) ConfigurationDoneRequest() int {
	return c.Send(&dap.ConfigurationDoneRequest{Request: request("configurationDone")})
}

// ContinueRequest resumes a thread.
func (c *Client) ContinueRequest(thread int) int {
	return c.Send(&dap.ContinueRequest{Request: request("continue"), Arguments: dap.ContinueArguments{ThreadId: thread}})
}

// ThreadsRequest lists threads.
func (c *Client) ThreadsRequest() int {
	return c.Send(&dap.ThreadsRequest{Request: request("threads")})
}

// StackTraceRequest asks for the frames of a thread.
func (c *Client) StackTraceRequest(thread, start, levels int) int {
	return c.Send(&dap.StackTraceRequest{Request: request("stackTrace"), Arguments: dap.StackTraceArguments{
		ThreadId: thread, StartFrame: start, Levels: levels}})
}

// ScopesRequest asks for the scopes of a frame.
func (c *Client) ScopesRequest(frame int) int {
	return c.Send(&dap.ScopesRequest{Request: request("scopes"), Arguments: dap.ScopesArguments{FrameId: frame}})
}

// VariablesRequest asks for the variables of a reference.
func (c *Client) VariablesRequest(ref int) int {
	return c.Send(&dap.VariablesRequest{Request: request("variables"), Arguments: dap.VariablesArguments{VariablesReference: ref}})
}

// EvaluateRequest evaluates expr in a frame.
func (c *Client) EvaluateRequest(expr string, frame int, context string) int {
	return c.Send(&dap.EvaluateRequest{Request: request("evaluate"), Arguments: dap.EvaluateArguments{
		Expression: expr, FrameId: frame, Context: context}})
}

// LoadedSourcesRequest lists loaded sources.
func (c *Client) LoadedSourcesRequest() int {
	return c.Send(&dap.LoadedSourcesRequest{Request: request("loadedSources")})
}

// DisconnectRequest ends the session.
func (c *Client) DisconnectRequest(terminateDebuggee bool) int {
	return c.Send(&dap.DisconnectRequest{Request: request("disconnect"), Arguments: &dap.DisconnectArguments{
		TerminateDebuggee: terminateDebuggee}})
}

// LastRaw is the body of the message the last Expect returned, as received.
func (c *Client) LastRaw() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastRaw
}

// Next returns the next message, or fails after Timeout.
func (c *Client) Next(t testing.TB) dap.Message {
	t.Helper()
	select {
	case r, ok := <-c.in:
		if !ok {
			t.Fatalf("DAP connection ended: %v\nreceived so far:\n%s", <-c.err, c.History())
		}
		c.mu.Lock()
		c.history = append(c.history, clip(string(r.raw)))
		c.lastRaw = r.raw
		c.mu.Unlock()
		return r.msg
	case <-time.After(c.Timeout):
		t.Fatalf("no DAP message within %s\nreceived so far:\n%s", c.Timeout, c.History())
	}
	return nil
}

// ExpectEOF waits for the adapter to close its side.
func (c *Client) ExpectEOF(t testing.TB) {
	t.Helper()
	deadline := time.After(c.Timeout)
	for {
		select {
		case r, ok := <-c.in:
			if !ok {
				return
			}
			c.mu.Lock()
			c.history = append(c.history, clip(string(r.raw)))
			c.mu.Unlock()
		case <-deadline:
			t.Fatalf("the adapter did not close the connection within %s", c.Timeout)
		}
	}
}

// History lists the received messages, one per line.
func (c *Client) History() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.history, "\n")
}

func clip(s string) string {
	if len(s) > 400 {
		return s[:400] + "..."
	}
	return s
}

// Expect waits for the next message of type T. Events of other types are
// skipped; a response of another type (an error response included) fails
// the test.
func Expect[T dap.Message](t testing.TB, c *Client) T {
	t.Helper()
	deadline := time.Now().Add(c.Timeout)
	for {
		saved := c.Timeout
		c.Timeout = time.Until(deadline)
		if c.Timeout <= 0 {
			c.Timeout = time.Millisecond
		}
		m := c.Next(t)
		c.Timeout = saved
		if v, ok := m.(T); ok {
			return v
		}
		if _, isResp := m.(dap.ResponseMessage); isResp {
			var zero T
			t.Fatalf("want %T, got response %s", zero, c.LastRaw())
		}
		if u, ok := m.(*Unknown); ok && u.Type == "response" {
			var zero T
			t.Fatalf("want %T, got response %s", zero, c.LastRaw())
		}
	}
}

// Typed helpers in the style of delve's service/dap tests.

func (c *Client) ExpectInitializeResponse(t testing.TB) *dap.InitializeResponse {
	t.Helper()
	return Expect[*dap.InitializeResponse](t, c)
}

func (c *Client) ExpectAttachResponse(t testing.TB) *dap.AttachResponse {
	t.Helper()
	return Expect[*dap.AttachResponse](t, c)
}

func (c *Client) ExpectErrorResponse(t testing.TB) *dap.ErrorResponse {
	t.Helper()
	return Expect[*dap.ErrorResponse](t, c)
}

func (c *Client) ExpectInitializedEvent(t testing.TB) *dap.InitializedEvent {
	t.Helper()
	return Expect[*dap.InitializedEvent](t, c)
}

func (c *Client) ExpectCapabilitiesEvent(t testing.TB) *dap.CapabilitiesEvent {
	t.Helper()
	return Expect[*dap.CapabilitiesEvent](t, c)
}

func (c *Client) ExpectSetBreakpointsResponse(t testing.TB) *dap.SetBreakpointsResponse {
	t.Helper()
	return Expect[*dap.SetBreakpointsResponse](t, c)
}

func (c *Client) ExpectConfigurationDoneResponse(t testing.TB) *dap.ConfigurationDoneResponse {
	t.Helper()
	return Expect[*dap.ConfigurationDoneResponse](t, c)
}

func (c *Client) ExpectContinueResponse(t testing.TB) *dap.ContinueResponse {
	t.Helper()
	return Expect[*dap.ContinueResponse](t, c)
}

func (c *Client) ExpectStoppedEvent(t testing.TB) *dap.StoppedEvent {
	t.Helper()
	return Expect[*dap.StoppedEvent](t, c)
}

func (c *Client) ExpectThreadsResponse(t testing.TB) *dap.ThreadsResponse {
	t.Helper()
	return Expect[*dap.ThreadsResponse](t, c)
}

func (c *Client) ExpectStackTraceResponse(t testing.TB) *dap.StackTraceResponse {
	t.Helper()
	return Expect[*dap.StackTraceResponse](t, c)
}

func (c *Client) ExpectScopesResponse(t testing.TB) *dap.ScopesResponse {
	t.Helper()
	return Expect[*dap.ScopesResponse](t, c)
}

func (c *Client) ExpectVariablesResponse(t testing.TB) *dap.VariablesResponse {
	t.Helper()
	return Expect[*dap.VariablesResponse](t, c)
}

func (c *Client) ExpectEvaluateResponse(t testing.TB) *dap.EvaluateResponse {
	t.Helper()
	return Expect[*dap.EvaluateResponse](t, c)
}

func (c *Client) ExpectLoadedSourcesResponse(t testing.TB) *dap.LoadedSourcesResponse {
	t.Helper()
	return Expect[*dap.LoadedSourcesResponse](t, c)
}

func (c *Client) ExpectDisconnectResponse(t testing.TB) *dap.DisconnectResponse {
	t.Helper()
	return Expect[*dap.DisconnectResponse](t, c)
}

func (c *Client) ExpectTerminatedEvent(t testing.TB) *dap.TerminatedEvent {
	t.Helper()
	return Expect[*dap.TerminatedEvent](t, c)
}

func (c *Client) ExpectOutputEvent(t testing.TB) *dap.OutputEvent {
	t.Helper()
	return Expect[*dap.OutputEvent](t, c)
}
