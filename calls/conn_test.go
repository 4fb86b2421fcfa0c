package calls

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// step is one piece of a conversation: bytes from the client (req) or
// from the server.
type step struct {
	req  bool
	data string
}

func req(s string) step  { return step{req: true, data: s} }
func resp(s string) step { return step{data: s} }

// run feeds a conversation to a Conn in pieces of chunk bytes (0: whole
// steps) and returns the calls it reported, End included.
func run(steps []step, chunk int) []Call {
	var out []Call
	t0 := time.Unix(1700000000, 0)
	tick := 0
	c := NewConn(Info{Target: "orders.vpc.internal:80", Conn: 7}, func(cl Call) { out = append(out, cl) })
	c.now = func() time.Time { tick++; return t0.Add(time.Duration(tick) * time.Millisecond) }
	for _, s := range steps {
		side := c.Responses()
		if s.req {
			side = c.Requests()
		}
		b := []byte(s.data)
		for len(b) > 0 {
			n := len(b)
			if chunk > 0 {
				n = min(n, chunk)
			}
			side.Write(b[:n])
			b = b[n:]
		}
	}
	c.End()
	return out
}

// short is what the tests compare: "METHOD url status sent/received trace err".
func short(c Call) string {
	s := c.Method + " " + c.URL() + " " + itoa(uint64(c.Status))
	s += " " + itoa(uint64(c.Sent)) + "/" + itoa(uint64(c.Received))
	if c.TraceID != "" {
		s += " trace=" + c.TraceID
	}
	if c.Err != "" {
		s += " err=" + c.Err
	}
	return s
}

const (
	get1 = "GET /a HTTP/1.1\r\nHost: orders.vpc.internal\r\n\r\n"
	ok5  = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
)

func TestCalls(t *testing.T) {
	chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
	post := "POST /orders HTTP/1.1\r\nHost: orders.vpc.internal\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
	tests := []struct {
		name  string
		steps []step
		want  []string
	}{
		{"one call", []step{req(get1), resp(ok5)},
			[]string{"GET http://orders.vpc.internal/a 200 46/43"}},
		{"keep-alive: three calls", []step{req(get1), resp(ok5), req(get1), resp(ok5), req(get1), resp(ok5)},
			[]string{"GET http://orders.vpc.internal/a 200 46/43", "GET http://orders.vpc.internal/a 200 46/43", "GET http://orders.vpc.internal/a 200 46/43"}},
		{"pipelined", []step{req(get1 + strings.Replace(get1, "/a", "/b", 1)), resp(ok5 + "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")},
			[]string{"GET http://orders.vpc.internal/a 200 46/43", "GET http://orders.vpc.internal/b 404 46/45"}},
		{"chunked response", []step{req(get1), resp(chunked)},
			[]string{"GET http://orders.vpc.internal/a 200 46/" + itoa(uint64(len(chunked)))}},
		{"chunked request", []step{req("POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), resp(ok5)},
			[]string{"POST http://orders.vpc.internal/p 200 61/43"}},
		{"100-continue", []step{req(post), resp("HTTP/1.1 100 Continue\r\n\r\n"), req("hello world"), resp(ok5)},
			[]string{"POST http://orders.vpc.internal/orders 200 " + itoa(uint64(len(post)+11)) + "/68"}},
		{"HEAD has no body", []step{req("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"), resp("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"), req(get1), resp(ok5)},
			[]string{"HEAD http://h/ 200 28/39", "GET http://orders.vpc.internal/a 200 46/43"}},
		{"204 and 304 have no body", []step{req(get1), resp("HTTP/1.1 204 No Content\r\n\r\n"), req(get1), resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"), req(get1), resp(ok5)},
			[]string{"GET http://orders.vpc.internal/a 204 46/27", "GET http://orders.vpc.internal/a 304 46/49", "GET http://orders.vpc.internal/a 200 46/43"}},
		{"body until close", []step{req(get1), resp("HTTP/1.0 200 OK\r\n\r\nstream...")},
			[]string{"GET http://orders.vpc.internal/a 200 46/28"}},
		{"no Host: the dialled target", []step{req("GET /x HTTP/1.0\r\n\r\n"), resp(ok5)},
			[]string{"GET http://orders.vpc.internal/x 200 19/43"}},
		{"absolute form", []step{req("GET http://api.vpc.internal:8080/v1?q=1 HTTP/1.1\r\nHost: api.vpc.internal:8080\r\n\r\n"), resp(ok5)},
			[]string{"GET http://api.vpc.internal:8080/v1?q=1 200 81/43"}},
		{"upgrade stops reading", []step{req("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
			resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), req("\x81\x05hello"), resp("\x81\x05hello")},
			[]string{"GET http://h/ws 101 70/77"}},
		{"upgrade refused goes on", []step{req("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"), resp(ok5), req(get1), resp(ok5)},
			[]string{"GET http://h/ws 200 70/43", "GET http://orders.vpc.internal/a 200 46/43"}},
		{"CONNECT stops reading", []step{req("CONNECT db.vpc.internal:5432 HTTP/1.1\r\nHost: db.vpc.internal:5432\r\n\r\n"), resp("HTTP/1.1 200 Connection established\r\n\r\n"), req(get1), resp(ok5)},
			[]string{"CONNECT db.vpc.internal:5432 200 69/39"}},
		{"not HTTP: nothing", []step{req("\x00\x01binary"), resp("\x02")}, nil},
		{"server speaks first: nothing", []step{resp("220 smtp ready\r\n"), req("HELO x\r\n")}, nil},
		{"garbage after a call", []step{req(get1), resp(ok5), req("\x00garbage")},
			[]string{"GET http://orders.vpc.internal/a 200 46/43"}},
		{"closed before the response", []step{req(get1)},
			[]string{"GET http://orders.vpc.internal/a 0 46/0 err=connection closed before the response"}},
		{"closed in the body", []step{req(get1), resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")},
			[]string{"GET http://orders.vpc.internal/a 200 46/42 err=connection closed before the end of the response"}},
		{"500 with traceparent", []step{req("GET /fail HTTP/1.1\r\nHost: h\r\ntraceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01\r\n\r\n"),
			resp("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")},
			[]string{"GET http://h/fail 500 101/57 trace=4bf92f3577b34da6a3ce929d0e0e4736"}},
		{"b3", []step{req("GET / HTTP/1.1\r\nX-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\r\n\r\n"), resp(ok5)},
			[]string{"GET http://orders.vpc.internal/ 200 66/43 trace=80f198ee56343ba864fe8b2a57d3eff7"}},
		{"sw8", []step{req("GET / HTTP/1.1\r\nsw8: 1-" + base64.StdEncoding.EncodeToString([]byte("a1.b2.c3")) + "-" + base64.StdEncoding.EncodeToString([]byte("seg")) + "-3-x-y-z-w\r\n\r\n"), resp(ok5)},
			[]string{"GET http://orders.vpc.internal/ 200 54/43 trace=a1.b2.c3"}},
		{"head too large", []step{req("GET / HTTP/1.1\r\nX: " + strings.Repeat("a", maxHead) + "\r\n\r\n"), resp(ok5)}, nil},
		{"bad content-length", []step{req("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), resp(ok5)}, nil},
		{"LF only", []step{req("GET /lf HTTP/1.1\nHost: h\n\n"), resp("HTTP/1.1 200 OK\nContent-Length: 2\n\nok")},
			[]string{"GET http://h/lf 200 26/37"}},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 7} {
			got := run(tt.steps, chunk)
			var s []string
			for _, c := range got {
				s = append(s, short(c))
			}
			if strings.Join(s, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("%s (chunk %d):\n got %q\nwant %q", tt.name, chunk, s, tt.want)
			}
		}
	}
}

func TestTimingsAndInfo(t *testing.T) {
	got := run([]step{req(get1), resp("HTTP/1.1 200 OK\r\n"), resp("Content-Length: 5\r\n\r\nhello")}, 0)
	if len(got) != 1 {
		t.Fatalf("%d calls", len(got))
	}
	c := got[0]
	// Ticks: request head 1ms, response first byte 2ms, done 3ms.
	if c.TTFB != time.Millisecond || c.Duration != 2*time.Millisecond {
		t.Errorf("ttfb %v duration %v", c.TTFB, c.Duration)
	}
	if c.Conn != 7 || c.Target != "orders.vpc.internal:80" || c.Proto != "HTTP/1.1" || c.Reason != "OK" {
		t.Errorf("%+v", c)
	}
}

func TestRedaction(t *testing.T) {
	got := run([]step{
		req("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cret\r\nCookie: sid=s3cret\r\nProxy-Authorization: Basic s3cret\r\nAccept: */*\r\n\r\n"),
		resp("HTTP/1.1 200 OK\r\nSet-Cookie: sid=s3cret; HttpOnly\r\nContent-Length: 0\r\n\r\n"),
	}, 0)
	if len(got) != 1 {
		t.Fatalf("%d calls", len(got))
	}
	b, _ := json.Marshal(got[0])
	if bytes.Contains(b, []byte("s3cret")) {
		t.Fatalf("credential kept: %s", b)
	}
	if n := bytes.Count(b, []byte(Redacted)); n != 4 {
		t.Errorf("%d redacted values in %s", n, b)
	}
	var buf bytes.Buffer
	if err := WriteHAR(&buf, got, "test"); err != nil || bytes.Contains(buf.Bytes(), []byte("s3cret")) {
		t.Fatalf("HAR: %v %s", err, buf.Bytes())
	}
}

// clientHello records a real ClientHello of crypto/tls for serverName.
func clientHello(t *testing.T, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		tls.Client(a, &tls.Config{ServerName: serverName, InsecureSkipVerify: serverName == ""}).Handshake()
		a.Close()
	}()
	b.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	b.Close()
	return append(hdr, body...)
}

func TestTLSServerName(t *testing.T) {
	hello := clientHello(t, "api.vpc.internal")
	if got := ServerName(hello[5:]); got != "api.vpc.internal" {
		t.Fatalf("ServerName %q", got)
	}
	if got := ServerName(clientHello(t, "")[5:]); got != "" {
		t.Fatalf("no SNI: %q", got)
	}
	for _, chunk := range []int{0, 1, 100} {
		got := run([]step{req(string(hello)), resp("\x16\x03\x03server hello..."), req("\x17\x03\x03appdata")}, chunk)
		if len(got) != 1 || !got[0].TLS || got[0].SNI != "api.vpc.internal" || got[0].Host != "api.vpc.internal" ||
			got[0].Sent != int64(len(hello)+10) || got[0].Received != 18 {
			t.Fatalf("chunk %d: %+v", chunk, got)
		}
	}
}

func TestSkip(t *testing.T) {
	var out []Call
	c := NewConn(Info{Target: "h:80"}, func(cl Call) { out = append(out, cl) })
	c.Requests().Write([]byte(get1))
	c.Responses().Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nab"))
	if n := c.Responses().Skip(); n != 999998 {
		t.Fatalf("Skip %d", n)
	}
	c.Responses().Skipped(999998)
	if len(out) != 1 || out[0].Received != 44+1000000 {
		t.Fatalf("%+v", out)
	}
	if n := c.Responses().Skip(); n != 0 {
		t.Fatalf("Skip after the body %d", n)
	}
	c.Requests().Write([]byte{0}) // not HTTP: stop
	if n := c.Requests().Skip(); n <= 1<<40 {
		t.Fatalf("Skip after stop %d", n)
	}
}

func TestRing(t *testing.T) {
	r := NewRing(3)
	for i := range 5 {
		r.Add(Call{Conn: uint64(i), Session: []string{"a", "b"}[i%2]})
	}
	got, dropped := r.Last(0, nil)
	if len(got) != 3 || got[0].Conn != 2 || got[2].Conn != 4 || dropped != 2 {
		t.Fatalf("%v %d", got, dropped)
	}
	got, _ = r.Last(1, func(c *Call) bool { return c.Session == "b" })
	if len(got) != 1 || got[0].Conn != 3 {
		t.Fatalf("%v", got)
	}
}

func TestHAR(t *testing.T) {
	got := run([]step{req("GET /a?x=1&y=%20z HTTP/1.1\r\nHost: h\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"),
		resp("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")}, 0)
	got = append(got, Call{TLS: true, SNI: "x"})
	var buf bytes.Buffer
	if err := WriteHAR(&buf, got, "v1"); err != nil {
		t.Fatal(err)
	}
	var h struct {
		Log struct {
			Version string
			Entries []struct {
				StartedDateTime string
				Time            float64
				Request         struct {
					Method, URL string
					QueryString []Header
				}
				Response struct {
					Status  int
					Content struct{ MimeType string }
				}
				Timings struct{ Wait, Receive float64 }
				TraceID string `json:"_traceId"`
			}
		}
	}
	if err := json.Unmarshal(buf.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	if h.Log.Version != "1.2" || len(h.Log.Entries) != 1 {
		t.Fatalf("%s", buf.Bytes())
	}
	e := h.Log.Entries[0]
	if e.Request.URL != "http://h/a?x=1&y=%20z" || e.Response.Status != 500 || e.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		len(e.Request.QueryString) != 2 || e.Request.QueryString[1].Value != " z" || e.Response.Content.MimeType != "application/json" ||
		e.Time != e.Timings.Wait+e.Timings.Receive {
		t.Fatalf("%s", buf.Bytes())
	}
	if _, err := time.Parse(time.RFC3339, e.StartedDateTime); err != nil {
		t.Fatal(err)
	}
}
