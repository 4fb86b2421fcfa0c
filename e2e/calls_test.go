package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/client"
	"github.com/tether-dev/tether/protocol"
)

// launchCalls starts config over JSON-RPC, waits for it to exit 0 and
// returns its calls from interconnect/calls (with headers).
func launchCalls(t *testing.T, p *proc, config string) []protocol.CallRecord {
	t.Helper()
	ctx := ctxT(t)
	var st protocol.LaunchStartResult
	if err := p.Call(ctx, "launch/start", map[string]any{"config": config}, &st); err != nil {
		t.Fatal(err)
	}
	m, err := p.WaitNotification(ctx, func(m client.Message) bool {
		return m.Method == "launch/state" && strings.Contains(string(m.Params), `"exited"`) && strings.Contains(string(m.Params), st.LaunchID)
	})
	if err != nil {
		t.Fatal(err)
	}
	var exited protocol.LaunchStateParams
	if json.Unmarshal(m.Params, &exited); exited.ExitCode == nil || *exited.ExitCode != 0 {
		t.Fatalf("%s exited %+v", config, exited)
	}
	// Notifications come from a queue: every call kept is notified too.
	var res protocol.InterconnectCallsResult
	if err := p.Call(ctx, "interconnect/calls", map[string]any{"sessionId": st.LaunchID, "headers": true}, &res); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitNotification(ctx, func(m client.Message) bool {
		notified := 0
		for _, n := range p.Notifications() {
			if n.Method == protocol.MethodInterconnectCall && strings.Contains(string(n.Params), st.LaunchID) {
				notified++
			}
		}
		return notified >= len(res.Calls)
	}); err != nil {
		t.Fatal(err)
	}
	return res.Calls
}

// TestCallsOverJSONRPC: HTTP calls of real apps through the fake cloud, read
// on the channel (curl through the HTTP proxy, and through SOCKS5 with two
// requests on one connection) and on the Java agent's forwards (with the
// calling frame), as interconnect/call notifications, interconnect/calls
// and a HAR log.
func TestCallsOverJSONRPC(t *testing.T) {
	w := startCloudWS(t, true)
	_, httpPort, _ := strings.Cut(w.cloud.HTTPAddr, ":")
	url := "http://" + w.cloud.HTTPName + ":" + httpPort + "/"
	want := strings.Replace(url, ":80/", "/", 1) // calls show no default port
	appendConfig(t, w.dir, `  - name: socks2
    type: exec
    exec: {command: [sh, -c, 'curl -sS --max-time 10 -x "$ALL_PROXY" -H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" -H "Authorization: Bearer s3cret" `+url+` `+url+`']}
    interconnect: {enabled: true, proxy: bastion}
`)
	p := startServe(t, "--workspace", w.dir)
	initialize(t, p.Client, map[string]any{})

	// curl through HTTP_PROXY: the channel's HTTP proxy.
	calls := launchCalls(t, p, "curl")
	if len(calls) != 1 || calls[0].URL != want || calls[0].Status != 200 || calls[0].Via != protocol.ViaChannel || calls[0].Method != "GET" {
		t.Fatalf("curl: %+v", calls)
	}

	// Two requests on one SOCKS5 connection: two calls, one conn.
	calls = launchCalls(t, p, "socks2")
	if len(calls) != 2 || calls[0].Conn != calls[1].Conn {
		t.Fatalf("socks2: %+v", calls)
	}
	for _, c := range calls {
		if c.URL != want || c.Status != 200 || c.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || c.DurationMs < c.TTFBMs || c.Received == 0 {
			t.Errorf("socks2 call %+v", c)
		}
		b, _ := json.Marshal(c)
		if strings.Contains(string(b), "s3cret") || !strings.Contains(string(b), protocol.RedactedValue) {
			t.Errorf("credentials not redacted: %s", b)
		}
	}

	// A real JVM with the Java agent: the calls say which frame opened the connection.
	calls = launchCalls(t, p, "probe")
	if len(calls) != 2 {
		t.Fatalf("probe: %+v", calls)
	}
	for _, c := range calls {
		if c.Via != protocol.ViaJavaAgent || c.Status != 200 || !strings.HasPrefix(c.OpenedBy, "Probe.get(Probe.java:") {
			t.Errorf("probe call %+v", c)
		}
	}

	// All of this client's calls as HAR.
	var har struct {
		Log struct {
			Version string
			Entries []struct {
				Request  struct{ Method, URL string }
				Response struct{ Status int }
			}
		}
	}
	if err := p.Call(ctxT(t), "interconnect/har", map[string]any{}, &har); err != nil {
		t.Fatal(err)
	}
	if har.Log.Version != "1.2" || len(har.Log.Entries) != 5 || har.Log.Entries[0].Request.URL != want {
		t.Fatalf("har: %+v", har)
	}
}

// demoCalls checks the call lines and the HAR file of the sandbox demo.
func demoCalls(t *testing.T, stderr, harFile string) {
	t.Helper()
	var ok200 []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "tether: GET http://orders.sandbox.internal/ -> 200 ") {
			ok200 = append(ok200, l[strings.LastIndex(l, "[conn"):])
		}
	}
	if len(ok200) != 3 || ok200[0] != ok200[1] || ok200[1] != ok200[2] || !strings.Contains(ok200[0], "opened by Sample.") {
		t.Errorf("want 3 calls on one connection, opened by Sample: %q\n%s", ok200, stderr)
	}
	if !strings.Contains(stderr, "tether: GET http://orders.sandbox.internal/fail -> 500 ") ||
		!strings.Contains(stderr, "trace 4bf92f3577b34da6a3ce929d0e0e4736") ||
		!strings.Contains(stderr, "tether: GET http://orders.sandbox.internal/slow?ms=300 -> 200 ") {
		t.Errorf("500 and slow calls missing:\n%s", stderr)
	}
	b, err := os.ReadFile(harFile)
	if err != nil {
		t.Fatal(err)
	}
	var har struct {
		Log struct{ Entries []json.RawMessage }
	}
	if err := json.Unmarshal(b, &har); err != nil || len(har.Log.Entries) != 5 {
		t.Errorf("HAR %s: %v, %d entries", filepath.Base(harFile), err, len(har.Log.Entries))
	}
}
