package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tether-dev/tether/internal/framing"
	"github.com/tether-dev/tether/protocol"
)

// rawClient speaks LSP framing on a real socket and keeps the replies as
// bytes, so that the tests can check what is really on the wire.
type rawClient struct {
	t *testing.T
	c net.Conn
	r *framing.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, r: framing.NewReader(c, framing.Options{})}
}

func (c *rawClient) send(body string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, frame(body)); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next message body, or an error when the connection ends
// (or nothing comes within 30 s).
func (c *rawClient) next() ([]byte, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	body, _, err := c.r.ReadFrame()
	return body, err
}

// reply skips notifications up to the reply with the given id (or the
// first reply without an id when id is "null"); id "" is any reply.
func (c *rawClient) reply(id string) map[string]any {
	c.t.Helper()
	for {
		body, err := c.next()
		if err != nil {
			c.t.Fatalf("waiting for reply %s: %v", id, err)
		}
		if !json.Valid(body) || !utf8.Valid(body) {
			c.t.Fatalf("reply is not valid JSON: %q", body)
		}
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		if _, isNote := m["method"]; isNote {
			continue
		}
		if got, _ := json.Marshal(m["id"]); string(got) == id || id == "" {
			return m
		}
	}
}

func (c *rawClient) initialize(id int) {
	c.t.Helper()
	c.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"initialize","params":{}}`, id))
	if m := c.reply(fmt.Sprint(id)); m["error"] != nil {
		c.t.Fatalf("initialize: %v", m["error"])
	}
}

// waitClosed fails unless the server closes the connection within 30 s.
func (c *rawClient) waitClosed() {
	c.t.Helper()
	for {
		if _, err := c.next(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.t.Fatal("the server did not close the connection")
			}
			return
		}
	}
}

func errorCode(m map[string]any) int {
	e, _ := m["error"].(map[string]any)
	f, _ := e["code"].(float64)
	return int(f)
}

// serveUnix runs Serve on a unix socket in a temporary directory.
func serveUnix(t *testing.T, opts Options) string {
	t.Helper()
	if opts.Workspace == "" {
		opts.Workspace = t.TempDir()
	}
	addr := filepath.Join(t.TempDir(), "s.sock")
	ln, err := Listen("unix:" + addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(opts).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return addr
}

func TestInitializeDeadline(t *testing.T) {
	addr := serveUnix(t, Options{InitializeTimeout: 300 * time.Millisecond})
	// A client that never sends anything, and one that never ends its header.
	idle := dialRaw(t, addr)
	loris := dialRaw(t, addr)
	if _, err := io.WriteString(loris.c, "Content-Length: 10"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	idle.waitClosed()
	loris.waitClosed()
	t.Logf("closed after %v", time.Since(start))
	// A client that initializes in time stays.
	ok := dialRaw(t, addr)
	ok.initialize(1)
	time.Sleep(600 * time.Millisecond)
	ok.send(`{"jsonrpc":"2.0","id":2,"method":"runConfig/list","params":{}}`)
	if m := ok.reply("2"); m["error"] != nil {
		t.Fatalf("after initialize: %v", m["error"])
	}
}

func TestConnectionLimit(t *testing.T) {
	addr := serveUnix(t, Options{MaxConnections: 3})
	var held []*rawClient
	for range 3 {
		c := dialRaw(t, addr)
		c.initialize(1) // served: initialize answers
		held = append(held, c)
	}
	over := dialRaw(t, addr)
	if m := over.reply("null"); errorCode(m) != protocol.CodeServerBusy {
		t.Fatalf("over the limit: %v", m)
	}
	over.waitClosed()
	// A slot frees when a client goes away.
	held[0].c.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		c := dialRaw(t, addr)
		// While still busy the server may refuse and close before this
		// write: its reply is read all the same.
		_, _ = io.WriteString(c.c, frame(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
		m := c.reply("")
		if m["error"] == nil {
			break
		}
		if errorCode(m) != protocol.CodeServerBusy || time.Now().After(deadline) {
			t.Fatalf("after a client left: %v", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSmallLimitBeforeInitialize(t *testing.T) {
	addr := serveUnix(t, Options{})
	c := dialRaw(t, addr)
	pad := strings.Repeat(" ", DefaultMaxUninitializedBytes)
	c.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}` + pad)
	if m := c.reply("null"); errorCode(m) != protocol.CodeInvalidRequest ||
		!strings.Contains(fmt.Sprint(m["error"]), "over the limit of 1048576") {
		t.Fatalf("big message before initialize: %v", m)
	}
	c.initialize(2)
	c.send(`{"jsonrpc":"2.0","id":3,"method":"runConfig/list","params":{}}` + pad)
	if m := c.reply("3"); m["error"] != nil {
		t.Fatalf("big message after initialize: %v", m)
	}
}

func TestFailingNotificationKeepsConnection(t *testing.T) {
	addr := serveUnix(t, Options{})
	c := dialRaw(t, addr)
	c.initialize(1)
	// Known methods whose handlers fail: bad params, a missing config.
	c.send(`{"jsonrpc":"2.0","method":"interconnect/set","params":{"bad":1}}`)
	c.send(`{"jsonrpc":"2.0","method":"launch/stop","params":{"launchId":"nope"}}`)
	c.send(`{"jsonrpc":"2.0","method":"runConfig/list","params":[1]}`)
	c.send(`{"jsonrpc":"2.0","id":2,"method":"runConfig/list","params":{}}`)
	logged := false
	for {
		body, err := c.next()
		if err != nil {
			t.Fatalf("connection ended after failing notifications: %v", err)
		}
		if strings.Contains(string(body), `"window/logMessage"`) && strings.Contains(string(body), "notification failed") {
			logged = true
		}
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		if m["id"] == 2.0 {
			if m["error"] != nil {
				t.Fatalf("request after failing notifications: %v", m)
			}
			break
		}
	}
	if !logged {
		t.Fatal("no window/logMessage for the failing notification")
	}
}

func TestInvalidUTF8IsNotEchoed(t *testing.T) {
	addr := serveUnix(t, Options{})
	c := dialRaw(t, addr)
	// Before initialize, and after.
	c.send("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"foo\xff\xfe\"}")
	if m := c.reply("1"); errorCode(m) != protocol.CodeServerNotInitialized {
		t.Fatalf("before initialize: %v", m)
	}
	c.initialize(2)
	c.send("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"foo\xff\xfe\"}")
	m := c.reply("3")
	if errorCode(m) != protocol.CodeMethodNotFound || !strings.Contains(fmt.Sprint(m["error"]), "foo\uFFFD") {
		t.Fatalf("invalid UTF-8 method: %v", m)
	}
	c.send("{\"jsonrpc\":\"2.0\",\"id\":\"x\xff\",\"method\":\"runConfig/list\",\"params\":{}}")
	c.send("{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"runConfig/get\",\"params\":{\"name\":\"a\xffb\"}}")
	for {
		body, err := c.next()
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(body) || !utf8.Valid(body) {
			t.Fatalf("reply is not valid JSON: %q", body)
		}
		if strings.Contains(string(body), `"id":4`) {
			break
		}
	}
}
