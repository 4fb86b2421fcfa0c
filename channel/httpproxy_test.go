package channel

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// httpConnect opens a CONNECT tunnel to target through c's HTTP proxy and
// checks the 200; with auth false it expects nothing and returns the raw conn.
func httpConnect(t testing.TB, c *Channel, target string, auth bool) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", c.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if auth {
		req += "Proxy-Authorization: " + basicAuth(c.Username(), c.Password()) + "\r\n"
	}
	// Early data right after the request must not be lost.
	if _, err := io.WriteString(conn, req+"\r\nping"); err != nil {
		t.Fatal(err)
	}
	if !auth {
		return conn
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %s", target, resp.Status)
	}
	var b [4]byte
	if _, err := io.ReadFull(br, b[:]); err != nil || string(b[:]) != "ping" {
		t.Fatalf("early data echo %q, %v", b, err)
	}
	return conn
}

func TestHTTPConnect(t *testing.T) {
	c, ft, rec := startChannel(t, nil)
	port := startEcho(t)
	conn := httpConnect(t, c, "echo.vpc.internal:"+port, true)
	if _, err := io.WriteString(conn, "pong"); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(conn)
	if err != nil || string(rest) != "pong" {
		t.Fatalf("echo %q, %v", rest, err)
	}
	if d := ft.Dialed(); len(d) != 1 || d[0] != "echo.vpc.internal:"+port {
		t.Errorf("tunnel dialled %q", d)
	}
	r := rec.wait(t, 1)[0]
	if r.Client != ClientHTTP || r.Route != RouteTunnel || r.Sent != 8 || r.Received != 8 || r.Err != "" {
		t.Errorf("record %+v", r)
	}
}

func TestHTTPProxyAuthRequired(t *testing.T) {
	c, ft, _ := startChannel(t, nil)
	port := startEcho(t)
	tests := []struct{ name, header string }{
		{"none", ""},
		{"wrong password", basicAuth(c.Username(), "nope")},
		{"not basic", "Bearer " + c.Password()},
		{"garbage", "Basic !!!"},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte(c.Username()+c.Password()))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, method := range []string{"CONNECT", "GET"} {
				conn, err := net.Dial("tcp", c.HTTPAddr())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(30 * time.Second))
				target := "echo.vpc.internal:" + port
				uri := target
				if method == "GET" {
					uri = "http://" + target + "/"
				}
				req := method + " " + uri + " HTTP/1.1\r\nHost: " + target + "\r\n"
				if tt.header != "" {
					req += "Proxy-Authorization: " + tt.header + "\r\n"
				}
				io.WriteString(conn, req+"\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusProxyAuthRequired || !strings.HasPrefix(resp.Header.Get("Proxy-Authenticate"), "Basic") {
					t.Errorf("%s: %s, Proxy-Authenticate %q", method, resp.Status, resp.Header.Get("Proxy-Authenticate"))
				}
			}
		})
	}
	if len(ft.Dialed()) != 0 {
		t.Errorf("unauthenticated requests reached the tunnel: %q", ft.Dialed())
	}
}

func TestHTTPConnectRefused(t *testing.T) {
	c, _, rec := startChannel(t, nil)
	closed := closedPort(t)
	conn, err := net.Dial("tcp", c.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	target := "echo.vpc.internal:" + closed
	io.WriteString(conn, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\nProxy-Authorization: "+basicAuth(c.Username(), c.Password())+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	want := target + " refused by the proxy machine"
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), want) {
		t.Errorf("%s %q", resp.Status, body)
	}
	if r := rec.wait(t, 1)[0]; r.Err != want || r.Client != ClientHTTP {
		t.Errorf("record %+v", r)
	}
}

func TestHTTPPlainGet(t *testing.T) {
	c, ft, rec := startChannel(t, nil)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"Proxy-Authorization", "Proxy-Connection", "X-Hop"} {
			if v := r.Header.Get(h); v != "" {
				http.Error(w, "leaked "+h+": "+v, 500)
				return
			}
		}
		w.Header().Set("Content-Encoding", "identity")
		io.WriteString(w, "host="+r.Host+" path="+r.URL.RequestURI()+" keep="+r.Header.Get("X-Keep"))
	}))
	t.Cleanup(backend.Close)
	_, port, _ := net.SplitHostPort(backend.Listener.Addr().String())

	proxyURL := &url.URL{Scheme: "http", User: url.UserPassword(c.Username(), c.Password()), Host: c.HTTPAddr()}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	for _, host := range []string{"web.vpc.internal:" + port, "127.0.0.1:" + port} {
		req, _ := http.NewRequest("GET", "http://"+host+"/a/b?c=d", nil)
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "secret")
		req.Header.Set("X-Keep", "yes")
		req.Header.Set("Proxy-Connection", "keep-alive")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "host=" + host + " path=/a/b?c=d keep=yes"
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("GET via %s: %s %q, want %q", host, resp.Status, body, want)
		}
	}
	if d := ft.Dialed(); len(d) != 1 || d[0] != "web.vpc.internal:"+port {
		t.Errorf("tunnel dialled %q", d)
	}

	// Without credentials: 407.
	noAuth := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: c.HTTPAddr()})}}
	resp, err := noAuth.Get("http://web.vpc.internal:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("without credentials: %s", resp.Status)
	}
	// Not a proxy request: 400.
	req, _ := http.NewRequest("GET", "http://"+c.HTTPAddr()+"/", nil)
	req.Header.Set("Proxy-Authorization", basicAuth(c.Username(), c.Password()))
	resp, err = http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("origin-form request: %s", resp.Status)
	}

	// Upstream connections are recorded when they close.
	tr.CloseIdleConnections()
	c.Close()
	recs := rec.wait(t, 2)
	routes := map[string]bool{}
	for _, r := range recs {
		if r.Client != ClientHTTP || r.Err != "" || r.Sent == 0 || r.Received == 0 {
			t.Errorf("record %+v", r)
		}
		routes[r.Route] = true
	}
	if !routes[RouteTunnel] || !routes[RouteDirect] {
		t.Errorf("records %+v", recs)
	}
}

func TestHTTPPlainGetRefused(t *testing.T) {
	c, _, rec := startChannel(t, nil)
	closed := closedPort(t)
	proxyURL := &url.URL{Scheme: "http", User: url.UserPassword(c.Username(), c.Password()), Host: c.HTTPAddr()}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get("http://web.vpc.internal:" + closed + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "refused by the proxy machine") {
		t.Errorf("%s %q", resp.Status, body)
	}
	if r := rec.wait(t, 1)[0]; !strings.Contains(r.Err, "refused") || r.Route != RouteTunnel {
		t.Errorf("record %+v", r)
	}
}
