package channel

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/calls"
)

// callLog collects the calls of a Channel.
type callLog struct {
	mu    sync.Mutex
	calls []calls.Call
}

func (l *callLog) add(c calls.Call) { l.mu.Lock(); l.calls = append(l.calls, c); l.mu.Unlock() }

func (l *callLog) wait(t *testing.T, n int) []calls.Call {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		got := append([]calls.Call(nil), l.calls...)
		l.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d calls, want %d: %+v", len(got), n, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startWeb serves / (small), /big (1 MiB, Content-Length) and /fail (500).
func startWeb(t *testing.T) string {
	t.Helper()
	big := strings.Repeat("x", 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			io.WriteString(w, big)
		case "/fail":
			http.Error(w, "boom", http.StatusInternalServerError)
		default:
			io.WriteString(w, "hello")
		}
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return port
}

func get(t *testing.T, client *http.Client, u string, hdr ...string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// Calls through SOCKS5 (tunnel and direct, where the kernel splices the
// big body) and through the HTTP proxy: one call per request, keep-alive
// calls share a connection number.
func TestChannelCalls(t *testing.T) {
	log := &callLog{}
	c, _, _ := startChannel(t, func(cfg *Config) { cfg.OnCall = log.add })
	port := startWeb(t)
	socks := &http.Client{Transport: &http.Transport{DialContext: socksDialer(t, c).DialContext}, Timeout: 10 * time.Second}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	get(t, socks, "http://web.vpc.internal:"+port+"/")
	get(t, socks, "http://web.vpc.internal:"+port+"/big")
	get(t, socks, "http://web.vpc.internal:"+port+"/fail", "traceparent", tp, "Authorization", "Bearer s3cret")
	get(t, socks, "http://127.0.0.1:"+port+"/big") // direct: TCP to TCP
	get(t, socks, "http://127.0.0.1:"+port+"/")
	proxyURL := &url.URL{Scheme: "http", User: url.UserPassword(c.Username(), c.Password()), Host: c.HTTPAddr()}
	viaHTTP := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 10 * time.Second}
	get(t, viaHTTP, "http://web.vpc.internal:"+port+"/fail")

	got := log.wait(t, 6)
	want := []struct {
		url    string
		status int
	}{
		{"http://web.vpc.internal:" + port + "/", 200},
		{"http://web.vpc.internal:" + port + "/big", 200},
		{"http://web.vpc.internal:" + port + "/fail", 500},
		{"http://127.0.0.1:" + port + "/big", 200},
		{"http://127.0.0.1:" + port + "/", 200},
		{"http://web.vpc.internal:" + port + "/fail", 500},
	}
	for i, w := range want {
		g := got[i]
		if g.URL() != w.url || g.Status != w.status || g.Method != "GET" || g.Err != "" {
			t.Errorf("call %d: %s %d %q, want %s %d", i, g.URL(), g.Status, g.Err, w.url, w.status)
		}
		if g.Duration < g.TTFB || g.TTFB <= 0 || g.Sent <= 0 || g.Received <= 0 {
			t.Errorf("call %d: ttfb %v duration %v sent %d received %d", i, g.TTFB, g.Duration, g.Sent, g.Received)
		}
	}
	if got[0].Conn != got[1].Conn || got[1].Conn != got[2].Conn || got[3].Conn != got[4].Conn || got[0].Conn == got[3].Conn {
		t.Errorf("connections %d %d %d, %d %d: keep-alive calls must share one", got[0].Conn, got[1].Conn, got[2].Conn, got[3].Conn, got[4].Conn)
	}
	for _, i := range []int{1, 3} {
		if got[i].Received < 1<<20 {
			t.Errorf("call %d received %d, want the 1 MiB body counted", i, got[i].Received)
		}
	}
	if got[2].TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id %q", got[2].TraceID)
	}
	for _, h := range got[2].RequestHeaders {
		if strings.Contains(h.Value, "s3cret") {
			t.Errorf("credential kept: %+v", h)
		}
	}
}

// A TLS connection through CONNECT is one entry with its server name.
func TestChannelCallsTLS(t *testing.T) {
	log := &callLog{}
	c, _, _ := startChannel(t, func(cfg *Config) { cfg.OnCall = log.add })
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secure") }))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	proxyURL := &url.URL{Scheme: "http", User: url.UserPassword(c.Username(), c.Password()), Host: c.HTTPAddr()}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "api.vpc.internal"}}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get(t, client, "https://web.vpc.internal:"+port+"/")
	tr.CloseIdleConnections()
	got := log.wait(t, 1)
	if len(got) != 1 || !got[0].TLS || got[0].SNI != "api.vpc.internal" || got[0].Sent == 0 || got[0].Received == 0 || got[0].Method != "" {
		t.Fatalf("%+v", got)
	}
}
