package debugadapter

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-dap"

	"github.com/tether-dev/tether/debugadapter/daptest"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/internal/syncbuf"
	"github.com/tether-dev/tether/tunnel"
)

// fakeTunnel dials loopback addresses; "host:port" targets are looked up
// in addrs, anything else is refused as the proxy machine would.
type fakeTunnel struct {
	mu     sync.Mutex
	addrs  map[string]string
	closed bool
	conns  []net.Conn
}

func (f *fakeTunnel) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	real, ok := f.addrs[address]
	if !ok || f.closed {
		return nil, &tunnel.DialError{Address: address, Reason: tunnel.Refused, Err: errors.New("connection refused")}
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, real)
	if err == nil {
		f.conns = append(f.conns, c)
	}
	return c, err
}

func (f *fakeTunnel) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return nil, errors.New("not in this test")
}
func (f *fakeTunnel) State() tunnel.State                { return tunnel.Connected }
func (f *fakeTunnel) Watch(fn func(tunnel.Event)) func() { return func() {} }
func (f *fakeTunnel) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, c := range f.conns {
		c.Close()
	}
	return nil
}

func (f *fakeTunnel) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// fakeAdapter is a remote debug adapter that answers like delve, records
// what it received, and dies on request.
type fakeAdapter struct {
	ln       net.Listener
	mu       sync.Mutex
	received []map[string]any
	raw      [][]byte
	die      chan struct{}
}

func startFakeAdapter(t *testing.T) *fakeAdapter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAdapter{ln: ln, die: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go a.serve(c)
		}
	}()
	return a
}

func (a *fakeAdapter) serve(c net.Conn) {
	defer c.Close()
	go func() { <-a.die; c.Close() }()
	r := newReader(c)
	seq := 0
	send := func(m map[string]any) {
		seq++
		m["seq"] = seq
		b, _ := json.Marshal(m)
		_ = dap.WriteBaseMessage(c, b)
	}
	respond := func(req map[string]any, body any) {
		m := map[string]any{"type": "response", "request_seq": req["seq"], "command": req["command"], "success": true}
		if body != nil {
			m["body"] = body
		}
		send(m)
	}
	for {
		raw, err := readMessage(r)
		if err != nil {
			return
		}
		var req map[string]any
		_ = json.Unmarshal(raw, &req)
		a.mu.Lock()
		a.received = append(a.received, req)
		a.raw = append(a.raw, raw)
		a.mu.Unlock()
		if req["type"] != "request" {
			continue
		}
		args, _ := req["arguments"].(map[string]any)
		switch req["command"] {
		case "initialize":
			send(map[string]any{"type": "event", "event": "output", "body": map[string]any{"output": "hello from the adapter\n"}})
			respond(req, map[string]any{"supportsConfigurationDoneRequest": true, "supportsLoadedSourcesRequest": true, "x-vendorCap": "v"})
		case "attach":
			respond(req, nil)
			send(map[string]any{"type": "event", "event": "initialized"})
		case "setBreakpoints":
			src := args["source"].(map[string]any)
			respond(req, map[string]any{"breakpoints": []any{map[string]any{"id": 1, "verified": true, "line": 7, "source": src}}})
		case "stackTrace":
			respond(req, map[string]any{"totalFrames": 1, "stackFrames": []any{map[string]any{"id": 1000, "name": "main.main", "line": 7, "column": 0,
				"source": map[string]any{"name": "main.go", "path": "/remote/app/main.go"}}}})
			// A vendor event that must arrive byte for byte (but for seq).
			seq++
			_ = dap.WriteBaseMessage(c, []byte(`{"seq":`+itoa(seq)+`,   "type":"event","event":"x-vendor","body":{"weird": [1.50, "\u00e9"]}}`))
		case "runInTerminalPlease":
			respond(req, nil)
			send(map[string]any{"type": "request", "command": "runInTerminal", "arguments": map[string]any{"args": []string{"true"}}})
		case "hang":
			// never answered
		case "disconnect":
			respond(req, nil)
			return
		default:
			respond(req, nil)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func (a *fakeAdapter) request(t *testing.T, command string) map[string]any {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.received {
		if r["command"] == command {
			return r
		}
	}
	t.Fatalf("the adapter did not receive %s", command)
	return nil
}

// bridge runs Serve on a pipe and returns a client for it.
type bridge struct {
	c    *daptest.Client
	tun  *fakeTunnel
	done chan error
}

func startBridge(t *testing.T, addrs map[string]string, tweak func(*Config)) *bridge {
	t.Helper()
	ideSide, bridgeSide := net.Pipe()
	b := &bridge{tun: &fakeTunnel{addrs: addrs}, done: make(chan error, 1)}
	cfg := Config{
		OpenTunnel: func(ctx context.Context, proxy string) (tunnel.Tunnel, error) {
			if proxy != "bastion" {
				return nil, errors.New("no proxy named " + proxy)
			}
			return b.tun, nil
		},
		HandshakeTimeout: 500 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { b.done <- Serve(ctx, bridgeSide, cfg); bridgeSide.Close() }()
	t.Cleanup(func() { cancel(); ideSide.Close() })
	b.c = daptest.NewClient(ideSide, ideSide, ideSide)
	b.c.Timeout = 5 * time.Second
	return b
}

func (b *bridge) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-b.done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func attachArgsFor(target string) map[string]any {
	return map[string]any{"proxy": "bastion", "target": target, "mode": "remote", "x-vendorArg": map[string]any{"a": 1},
		"substitutePath": []any{map[string]any{"from": "/local/app", "to": "/remote/app"}}}
}

func TestSessionRelaysAndTranslates(t *testing.T) {
	ad := startFakeAdapter(t)
	b := startBridge(t, map[string]string{"10.0.0.5:4000": ad.ln.Addr().String()}, nil)
	c := b.c

	c.InitializeRequest()
	ir := c.ExpectInitializeResponse(t)
	if ir.Seq != 1 || !ir.Body.SupportsConfigurationDoneRequest || !ir.Body.SupportTerminateDebuggee {
		t.Fatalf("initialize response %s", c.LastRaw())
	}
	attachSeq := c.AttachRequest(attachArgsFor("10.0.0.5:4000"))
	ce := c.ExpectCapabilitiesEvent(t)
	raw := string(c.LastRaw())
	if !ce.Body.Capabilities.SupportsLoadedSourcesRequest || !strings.Contains(raw, `"supportTerminateDebuggee":false`) || !strings.Contains(raw, `"x-vendorCap":"v"`) {
		t.Errorf("capabilities event %s", raw)
	}
	out := c.ExpectOutputEvent(t)
	if out.Body.Output != "hello from the adapter\n" {
		t.Errorf("early output %q", out.Body.Output)
	}
	ar := c.ExpectAttachResponse(t)
	if ar.RequestSeq != attachSeq {
		t.Errorf("attach response request_seq %d, want %d", ar.RequestSeq, attachSeq)
	}
	c.ExpectInitializedEvent(t)

	// The remote got the IDE's initialize and an attach without our arguments.
	if init := ad.request(t, "initialize"); init["arguments"].(map[string]any)["clientID"] != "daptest" {
		t.Errorf("initialize replayed as %v", init)
	}
	args := ad.request(t, "attach")["arguments"].(map[string]any)
	for _, k := range []string{"proxy", "target", "substitutePath"} {
		if _, ok := args[k]; ok {
			t.Errorf("attach argument %s reached the remote", k)
		}
	}
	if args["mode"] != "remote" || args["x-vendorArg"].(map[string]any)["a"] != 1.0 {
		t.Errorf("attach arguments at the remote: %v", args)
	}

	c.SetBreakpointsRequest("/local/app/main.go", 7)
	sb := c.ExpectSetBreakpointsResponse(t)
	if got := ad.request(t, "setBreakpoints")["arguments"].(map[string]any)["source"].(map[string]any)["path"]; got != "/remote/app/main.go" {
		t.Errorf("remote got breakpoint path %v", got)
	}
	if len(sb.Body.Breakpoints) != 1 || sb.Body.Breakpoints[0].Source.Path != "/local/app/main.go" {
		t.Errorf("setBreakpoints response %s", c.LastRaw())
	}
	c.StackTraceRequest(1, 0, 20)
	st := c.ExpectStackTraceResponse(t)
	if st.Body.StackFrames[0].Source.Path != "/local/app/main.go" {
		t.Errorf("stack frame source %s", c.LastRaw())
	}
	m := c.Next(t)
	if u, ok := m.(*daptest.Unknown); !ok || u.Event != "x-vendor" {
		t.Fatalf("want the vendor event, got %T", m)
	}
	if want := `{"seq":` + itoa(m.GetSeq()) + `,   "type":"event","event":"x-vendor","body":{"weird": [1.50, "\u00e9"]}}`; string(c.LastRaw()) != want {
		t.Errorf("vendor event changed:\n got %s\nwant %s", c.LastRaw(), want)
	}
	if m.GetSeq() <= st.Seq {
		t.Errorf("seq not increasing: %d after %d", m.GetSeq(), st.Seq)
	}

	// A reverse request: the IDE's answer goes back with the remote's seq.
	c.Send(&dap.Request{ProtocolMessage: dap.ProtocolMessage{Type: "request"}, Command: "runInTerminalPlease"})
	c.Next(t) // its response
	rit := daptest.Expect[*dap.RunInTerminalRequest](t, c)
	c.Send(&dap.RunInTerminalResponse{Response: dap.Response{ProtocolMessage: dap.ProtocolMessage{Type: "response"},
		Command: "runInTerminal", RequestSeq: rit.Seq, Success: true}})
	c.ThreadsRequest()
	c.ExpectThreadsResponse(t)
	ad.mu.Lock()
	var ritResp map[string]any
	for _, r := range ad.received {
		if r["type"] == "response" {
			ritResp = r
		}
	}
	ad.mu.Unlock()
	if ritResp == nil || ritResp["request_seq"].(float64) >= float64(rit.Seq) {
		t.Errorf("runInTerminal response at the remote: %v (IDE-facing seq %d)", ritResp, rit.Seq)
	}

	c.DisconnectRequest(true)
	c.ExpectDisconnectResponse(t)
	if dr := ad.request(t, "disconnect"); dr["arguments"].(map[string]any)["terminateDebuggee"] != true {
		t.Errorf("disconnect at the remote: %v", dr)
	}
	b.wait(t)
	if !b.tun.isClosed() {
		t.Error("tunnel left open")
	}
}

func TestSessionAttachErrors(t *testing.T) {
	httpLn, _ := net.Listen("tcp", "127.0.0.1:0")
	silentLn, _ := net.Listen("tcp", "127.0.0.1:0")
	t.Cleanup(func() { httpLn.Close(); silentLn.Close() })
	go func() {
		for {
			c, err := httpLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n400 Bad Request")
			}()
		}
	}()
	var silent []net.Conn
	var smu sync.Mutex
	go func() {
		for {
			c, err := silentLn.Accept()
			if err != nil {
				return
			}
			smu.Lock()
			silent = append(silent, c)
			smu.Unlock()
		}
	}()
	t.Cleanup(func() {
		smu.Lock()
		defer smu.Unlock()
		for _, c := range silent {
			c.Close()
		}
	})
	addrs := map[string]string{"10.0.0.6:80": httpLn.Addr().String(), "10.0.0.7:4000": silentLn.Addr().String()}
	tests := []struct {
		name     string
		args     map[string]any
		want     string
		category errcat.Category
	}{
		{"target refused", attachArgsFor("10.0.0.9:4000"), "10.0.0.9:4000 refused by the proxy machine", errcat.Environment},
		{"not DAP", attachArgsFor("10.0.0.6:80"), "10.0.0.6:80 does not speak the Debug Adapter Protocol", errcat.Environment},
		{"silent", attachArgsFor("10.0.0.7:4000"), "sent no DAP reply within 500ms", errcat.Environment},
		{"no proxy", map[string]any{"target": "10.0.0.5:4000"}, "proxy is required", errcat.User},
		{"no target", map[string]any{"proxy": "bastion"}, "target is required", errcat.User},
		{"bad target", map[string]any{"proxy": "bastion", "target": "10.0.0.5"}, `must be "host:port"`, errcat.User},
		{"unknown proxy", map[string]any{"proxy": "nope", "target": "10.0.0.5:1"}, "cannot open the tunnel to proxy nope: no proxy named nope", errcat.User},
		{"bad substitutePath", map[string]any{"proxy": "bastion", "target": "10.0.0.5:1", "substitutePath": "x"}, "attach argument substitutePath: expected", errcat.User},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logged syncbuf.Buffer
			b := startBridge(t, addrs, func(c *Config) {
				c.Logger = slog.New(slog.NewTextHandler(&logged, nil))
				open := c.OpenTunnel
				c.OpenTunnel = func(ctx context.Context, proxy string) (tunnel.Tunnel, error) {
					tun, err := open(ctx, proxy)
					return tun, errcat.User.Wrap(err) // as the workspace's "no proxy named"
				}
			})
			b.c.InitializeRequest()
			b.c.ExpectInitializeResponse(t)
			start := time.Now()
			b.c.AttachRequest(tt.args)
			er := b.c.ExpectErrorResponse(t)
			if er.Command != "attach" || er.Body.Error == nil || er.Body.Error.Id != FailedToAttach || !strings.Contains(er.Message, tt.want) {
				t.Fatalf("error response %s, want %q", b.c.LastRaw(), tt.want)
			}
			if log := logged.String(); !strings.Contains(log, "category="+string(tt.category)) {
				t.Errorf("log %q, want category %s", log, tt.category)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %s", d)
			}
			b.c.DisconnectRequest(false)
			b.c.ExpectDisconnectResponse(t)
			b.wait(t)
			if b.tun.conns != nil && !b.tun.isClosed() {
				t.Error("tunnel left open after a failed attach")
			}
		})
	}
}

func TestSessionBeforeAttach(t *testing.T) {
	b := startBridge(t, nil, nil)
	c := b.c
	c.ThreadsRequest()
	if er := c.ExpectErrorResponse(t); er.Body.Error.Id != NotAttached {
		t.Errorf("threads before initialize: %s", c.LastRaw())
	}
	c.AttachRequest(attachArgsFor("10.0.0.5:4000"))
	if er := c.ExpectErrorResponse(t); !strings.Contains(er.Message, "initialize first") {
		t.Errorf("attach before initialize: %s", c.LastRaw())
	}
	c.InitializeRequest()
	c.ExpectInitializeResponse(t)
	c.LaunchRequest(map[string]any{"program": "x"})
	if er := c.ExpectErrorResponse(t); er.Body.Error.Id != FailedToLaunch {
		t.Errorf("launch: %s", c.LastRaw())
	}
	// Garbage is ignored, not fatal.
	_ = c.SendRaw([]byte(`not json`))
	c.DisconnectRequest(false)
	c.ExpectDisconnectResponse(t)
	b.wait(t)
}

func TestSessionRemoteDies(t *testing.T) {
	ad := startFakeAdapter(t)
	b := startBridge(t, map[string]string{"10.0.0.5:4000": ad.ln.Addr().String()}, nil)
	c := b.c
	c.InitializeRequest()
	c.ExpectInitializeResponse(t)
	c.AttachRequest(attachArgsFor("10.0.0.5:4000"))
	c.ExpectAttachResponse(t)
	c.ExpectInitializedEvent(t)
	hang := c.Send(&dap.Request{ProtocolMessage: dap.ProtocolMessage{Type: "request"}, Command: "hang"})
	for ad.count() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	close(ad.die)
	er := c.ExpectErrorResponse(t)
	if er.RequestSeq != hang || er.Body.Error.Id != ConnectionLost {
		t.Errorf("in-flight request: %s", c.LastRaw())
	}
	c.ExpectTerminatedEvent(t)
	c.ThreadsRequest()
	if er := c.ExpectErrorResponse(t); er.Body.Error.Id != ConnectionLost {
		t.Errorf("after loss: %s", c.LastRaw())
	}
	if !b.tun.isClosed() {
		t.Error("tunnel left open after the remote died")
	}
	c.DisconnectRequest(true)
	c.ExpectDisconnectResponse(t)
	b.wait(t)
}

func (a *fakeAdapter) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.received)
}

func TestSessionIDEGoesAway(t *testing.T) {
	ad := startFakeAdapter(t)
	b := startBridge(t, map[string]string{"10.0.0.5:4000": ad.ln.Addr().String()}, nil)
	b.c.InitializeRequest()
	b.c.ExpectInitializeResponse(t)
	b.c.AttachRequest(attachArgsFor("10.0.0.5:4000"))
	b.c.ExpectAttachResponse(t)
	b.c.Close()
	b.wait(t)
	if !b.tun.isClosed() {
		t.Error("tunnel left open after the IDE went away")
	}
}
