package channel

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

const laneLine = "X-Tether-Lane: alice\r\n"

func inject(in string, splits ...int) string {
	l := laneInjector{line: laneLine}
	var out []byte
	b := []byte(in)
	prev := 0
	for _, s := range splits {
		if s > prev && s < len(b) {
			out = append(out, l.feed(b[prev:s])...)
			prev = s
		}
	}
	out = append(out, l.feed(b[prev:])...)
	return string(append(out, l.flush()...)) // as on CloseWrite
}

func TestLaneInjector(t *testing.T) {
	get := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	getL := "GET / HTTP/1.1\r\n" + laneLine + "Host: a\r\n\r\n"
	post := "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
	postL := "POST /x HTTP/1.1\r\n" + laneLine + "Host: a\r\nContent-Length: 5\r\n\r\nhello"
	chunk := "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nGET /\r\n0\r\nT: 1\r\n\r\n"
	chunkL := "PUT / HTTP/1.1\r\n" + laneLine + "Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nGET /\r\n0\r\nT: 1\r\n\r\n"
	ws := "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	wsL := "GET /ws HTTP/1.1\r\n" + laneLine + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	for _, tc := range []struct{ name, in, want string }{
		{"get", get, getL},
		{"keep-alive", get + post + get, getL + postL + getL},
		{"chunked body that looks like a request", chunk + get, chunkL + getL},
		{"already tagged", "GET / HTTP/1.1\r\nx-tether-lane: bob\r\n\r\n", "GET / HTTP/1.1\r\nx-tether-lane: bob\r\n\r\n"},
		{"upgrade passes the rest", ws + get, wsL + get},
		{"tls", "\x16\x03\x01\x00\x05hello", "\x16\x03\x01\x00\x05hello"},
		{"redis", "PING\r\n", "PING\r\n"},
		{"not http/1", "GET / HTTP/2.0\r\n\r\n", "GET / HTTP/2.0\r\n\r\n"},
		{"connect", "CONNECT a:443 HTTP/1.1\r\n\r\n", "CONNECT a:443 HTTP/1.1\r\n\r\n"},
	} {
		for split := 0; split <= len(tc.in); split++ {
			if got := inject(tc.in, split, split+3); got != tc.want {
				t.Fatalf("%s (split %d): got\n%q\nwant\n%q", tc.name, split, got, tc.want)
			}
		}
	}
}

func FuzzLaneInjector(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 3, 20)
	f.Add("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", 10, 50)
	f.Add("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n", 1, 40)
	f.Fuzz(func(t *testing.T, in string, a, b int) {
		if strings.Contains(strings.ToLower(in), "tether") {
			return
		}
		whole := inject(in)
		if got := inject(in, a, b); got != whole {
			t.Fatalf("split-dependent output:\n%q\n%q", got, whole)
		}
		if strings.ReplaceAll(whole, laneLine, "") != in {
			t.Fatalf("output is not the input plus lane lines:\n%q\n%q", in, whole)
		}
	})
}

// TestWithLaneHeader: a real HTTP client's keep-alive requests through the
// wrapper all reach the server with the lane header.
func TestWithLaneHeader(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Header.Get("X-Tether-Lane")+" "+string(b))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	dials := 0
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
		dials++
		c, err := (&net.Dialer{}).DialContext(ctx, n, a)
		if err != nil {
			return nil, err
		}
		return WithLaneHeader(c, "alice"), nil
	}}}
	for i, body := range []string{"", "one", strings.Repeat("x", 100000)} {
		var resp *http.Response
		if i == 2 { // chunked: unknown length
			resp, err = c.Post("http://"+ln.Addr().String()+"/", "text/plain", bufio.NewReader(bytes.NewReader([]byte(body))))
		} else {
			resp, err = c.Post("http://"+ln.Addr().String()+"/", "text/plain", strings.NewReader(body))
		}
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != "alice "+body {
			t.Fatalf("request %d: got %.40q", i, got)
		}
	}
	if dials != 1 {
		t.Errorf("%d connections, want one keep-alive connection", dials)
	}
}
