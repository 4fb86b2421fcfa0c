package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/tether-dev/tether/internal/agentproto"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestLaneOf(t *testing.T) {
	for _, tc := range []struct {
		h    http.Header
		want string
	}{
		{http.Header{}, ""},
		{http.Header{"X-Tether-Lane": {"alice"}}, "alice"},
		{http.Header{"Baggage": {"tether-lane=bob"}}, "bob"},
		{http.Header{"Baggage": {"userId=7;p=1, tether-lane = carol ;prop, x=y"}}, "carol"},
		{http.Header{"Baggage": {"a=b", "tether-lane=d%20e"}}, "d e"},
		{http.Header{"Baggage": {"tether-lanes=no, tether-lane="}}, ""},
		{http.Header{"X-Tether-Lane": {"alice"}, "Baggage": {"tether-lane=bob"}}, "alice"},
	} {
		if got := LaneOf(tc.h); got != tc.want {
			t.Errorf("LaneOf(%v) = %q, want %q", tc.h, got, tc.want)
		}
	}
}

func FuzzBaggage(f *testing.F) {
	f.Add("tether-lane=alice")
	f.Add("a=b;c, tether-lane=%41;x")
	f.Add(",,;=,=")
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := agentproto.BaggageMember(s, LaneBaggageKey)
		if ok && v == "" {
			t.Fatal("ok with an empty value")
		}
	})
}

// namedServer answers every request with its name and the lane header it saw.
func namedServer(t *testing.T, name string, ready bool) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d", name, len(body))
	})
	var l net.Listener = ln
	if ready {
		l = &greetingListener{ln}
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ln
}

// greetingListener writes LaneReady on every accepted connection, as the
// laptop does once its local app accepted.
type greetingListener struct{ net.Listener }

func (g *greetingListener) Accept() (net.Conn, error) {
	c, err := g.Listener.Accept()
	if err == nil {
		_, err = c.Write([]byte(LaneReady))
	}
	return c, err
}

func startTestRouter(t *testing.T, base string) (*Router, string, string) {
	t.Helper()
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, err := StartRouter(RouterConfig{Ports: []RouterPort{{Listen: "127.0.0.1:0", Base: base}}, Control: cln,
		Token: "secret", TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, r.Addrs()[0].String(), cln.Addr().String()
}

func control(t *testing.T, addr, method, path, token string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+addr+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func get(t *testing.T, c *http.Client, url string, hdr map[string]string) (string, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader("hello"))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.Header.Get(LaneServedHeader)
}

func TestRouter(t *testing.T) {
	base := namedServer(t, "base", false)
	alice := namedServer(t, "alice", true)
	_, addr, ctl := startTestRouter(t, base.Addr().String())

	if resp, _ := control(t, ctl, "GET", "/v1/status", "wrong", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", resp.StatusCode)
	}
	owner := RouteOwner{User: "alice", Host: "laptop", PID: 42}
	if resp, b := control(t, ctl, "PUT", "/v1/lanes/alice", "secret", RouteRequest{Target: alice.Addr().String(), Session: "s1", Owner: owner}); resp.StatusCode != 200 {
		t.Fatalf("register: %d %s", resp.StatusCode, b)
	}
	// One keep-alive connection, per-request routing.
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	url := "http://" + addr + "/"
	for _, tc := range []struct {
		hdr        map[string]string
		body, serv string
	}{
		{nil, "base 5", ""},
		{map[string]string{"X-Tether-Lane": "alice"}, "alice 5", "lane"},
		{map[string]string{"Baggage": "k=v, tether-lane=alice"}, "alice 5", "lane"},
		{map[string]string{"X-Tether-Lane": "bob"}, "base 5", "base"},
		{nil, "base 5", ""},
	} {
		body, served := get(t, c, url, tc.hdr)
		if body != tc.body || served != tc.serv {
			t.Errorf("%v: got %q (served %q), want %q (%q)", tc.hdr, body, served, tc.body, tc.serv)
		}
	}

	// A dead laptop: the route stays, requests fall back and are counted.
	alice.Close()
	if body, served := get(t, c, url, map[string]string{"X-Tether-Lane": "alice"}); body != "base 5" || served != "base" {
		t.Fatalf("dead lane: %q %q", body, served)
	}
	_, b := control(t, ctl, "PUT", "/v1/lanes/alice", "secret", RouteRequest{Target: alice.Addr().String(), Session: "s1", Owner: owner})
	var rep RouteReply
	json.Unmarshal(b, &rep)
	if rep.Fallbacks != 1 || rep.Served != 2 || rep.Reason == "" {
		t.Fatalf("reply %+v", rep)
	}

	// Removal by another session is ignored; by the owner it works.
	control(t, ctl, "DELETE", "/v1/lanes/alice?session=other", "secret", nil)
	_, b = control(t, ctl, "DELETE", "/v1/lanes/alice?session=s1", "secret", nil)
	var st RouterStatus
	json.Unmarshal(b, &st)
	if len(st.Routes) != 0 || len(st.Expired) != 0 {
		t.Fatalf("status after delete %+v", st)
	}

	// A lease that is not renewed expires, and its owner is listed.
	control(t, ctl, "PUT", "/v1/lanes/bob", "secret", RouteRequest{Target: "127.0.0.1:1", Session: "s2", Owner: owner, TTLSeconds: 1})
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, b = control(t, ctl, "GET", "/v1/status", "secret", nil)
		st = RouterStatus{}
		json.Unmarshal(b, &st)
		if len(st.Routes) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("route did not expire: %s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(st.Expired) != 1 || st.Expired[0].PID != 42 {
		t.Fatalf("expired %+v", st.Expired)
	}
}

// TestRouterRaw: a connection that does not start with an HTTP request is
// carried to base untouched.
func TestRouterRaw(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); c.Write([]byte("hi ")); io.Copy(c, c) }()
		}
	}()
	_, addr, _ := startTestRouter(t, ln.Addr().String())
	for _, first := range []string{"", "\xda\xbb"} { // server-first, binary client-first
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if first != "" {
			c.Write([]byte(first))
		}
		br := bufio.NewReader(c)
		got := make([]byte, 3+len(first))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != "hi "+first {
			t.Fatalf("raw %q: %q %v", first, got, err)
		}
		c.Close()
	}
}
