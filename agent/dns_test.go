package agent

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tether-dev/tether/internal/routes"
)

func newTestDNSHandler(t testing.TB) *dnsHandler {
	t.Helper()
	pool, err := routes.NewPool(routes.DefaultFakeRange(), routes.RecycleOldest)
	if err != nil {
		t.Fatal(err)
	}
	return &dnsHandler{routes: routes.Routes{Domains: []string{"vpc.internal", "b.local"}}, pool: pool, log: slog.New(slog.DiscardHandler)}
}

func dnsQuery(t testing.TB, id uint16, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	m, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func parseDNSAnswer(t testing.TB, m []byte) (dnsmessage.Header, []netip.Addr) {
	t.Helper()
	var msg dnsmessage.Message
	if err := msg.Unpack(m); err != nil {
		t.Fatalf("unpack answer: %v", err)
	}
	var addrs []netip.Addr
	for _, a := range msg.Answers {
		switch r := a.Body.(type) {
		case *dnsmessage.AResource:
			addrs = append(addrs, netip.AddrFrom4(r.A))
		case *dnsmessage.AAAAResource:
			addrs = append(addrs, netip.AddrFrom16(r.AAAA))
		}
	}
	return msg.Header, addrs
}

func TestDNSAnswerLocal(t *testing.T) {
	h := newTestDNSHandler(t)
	resp, ok := h.answerLocal(dnsQuery(t, 7, "db.vpc.internal.", dnsmessage.TypeA))
	if !ok || resp == nil {
		t.Fatal("db.vpc.internal not answered locally")
	}
	hdr, addrs := parseDNSAnswer(t, resp)
	if hdr.ID != 7 || !hdr.Response || hdr.RCode != dnsmessage.RCodeSuccess || len(addrs) != 1 || !h.pool.Contains(addrs[0]) {
		t.Fatalf("answer %+v %v", hdr, addrs)
	}
	if n, _ := h.pool.Name(addrs[0]); n != "db.vpc.internal" {
		t.Errorf("fake address names %q", n)
	}
	// Case does not matter and the answer is stable; the apex is included.
	resp, _ = h.answerLocal(dnsQuery(t, 8, "DB.VPC.Internal.", dnsmessage.TypeA))
	if _, again := parseDNSAnswer(t, resp); len(again) != 1 || again[0] != addrs[0] {
		t.Errorf("second answer %v, want %v", again, addrs)
	}
	if resp, ok := h.answerLocal(dnsQuery(t, 9, "vpc.internal.", dnsmessage.TypeA)); !ok || resp == nil {
		t.Error("apex not answered")
	}
	// AAAA: NOERROR with no answer.
	resp, ok = h.answerLocal(dnsQuery(t, 10, "db.vpc.internal.", dnsmessage.TypeAAAA))
	hdr, addrs = parseDNSAnswer(t, resp)
	if !ok || hdr.RCode != dnsmessage.RCodeSuccess || len(addrs) != 0 {
		t.Errorf("AAAA: %+v %v", hdr, addrs)
	}
	// Outside the domains: forwarded.
	for _, n := range []string{"example.com.", "xvpc.internal.", "vpc.internal.example.com.", "local."} {
		if _, ok := h.answerLocal(dnsQuery(t, 11, n, dnsmessage.TypeA)); ok {
			t.Errorf("%s answered locally", n)
		}
	}
	// Garbage: dropped; a response: dropped.
	if resp, ok := h.answerLocal([]byte{1, 2, 3}); !ok || resp != nil {
		t.Error("garbage not dropped")
	}
	if resp, ok := h.answerLocal(resp); !ok || resp != nil {
		t.Error("response not dropped")
	}
}

func TestParseResolvConf(t *testing.T) {
	got := parseResolvConf("# Docker\nnameserver 127.0.0.11\nsearch x\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:0\nnameserver 2001:db8::53\n")
	want := "127.0.0.11:53,[fe80::1%eth0]:53,[2001:db8::53]:53"
	if strings.Join(got, ",") != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// testDNSServer answers every A query with addr, over UDP and TCP on one
// port, and records the names asked.
type testDNSServer struct {
	addr  netip.Addr
	mu    sync.Mutex
	names []string
}

func (s *testDNSServer) answer(q []byte) []byte {
	var msg dnsmessage.Message
	if err := msg.Unpack(q); err != nil || len(msg.Questions) != 1 {
		return nil
	}
	s.mu.Lock()
	s.names = append(s.names, msg.Questions[0].Name.String())
	s.mu.Unlock()
	msg.Response = true
	if msg.Questions[0].Type == dnsmessage.TypeA {
		msg.Answers = []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: msg.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
			Body:   &dnsmessage.AResource{A: s.addr.As4()},
		}}
	}
	out, _ := msg.Pack()
	return out
}

func (s *testDNSServer) asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...)
}

// serve serves on pc and ln until they are closed.
func (s *testDNSServer) serve(pc net.PacketConn, ln net.Listener) {
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := s.answer(buf[:n]); r != nil {
				pc.WriteTo(r, from)
			}
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					q, err := readTCPMsg(c)
					if err != nil {
						return
					}
					if writeTCPMsg(c, s.answer(q)) != nil {
						return
					}
				}
			}()
		}
	}()
}

func TestDNSForward(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Skipf("TCP port %d taken: %v", port, err)
	}
	defer ln.Close()
	srv := &testDNSServer{addr: netip.MustParseAddr("192.0.2.44")}
	srv.serve(pc, ln)

	// A dead server first: the forwarder moves on to the next.
	dead, _ := net.ListenPacket("udp", "127.0.0.1:0")
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	var d net.Dialer
	h := newTestDNSHandler(t)
	h.forward = (&dnsForwarder{servers: []string{deadAddr, pc.LocalAddr().String()}, dial: d.DialContext}).forward
	ctx := context.Background()
	for _, tcp := range []bool{false, true} {
		resp := h.handle(ctx, dnsQuery(t, 42, "www.example.com.", dnsmessage.TypeA), tcp)
		hdr, addrs := parseDNSAnswer(t, resp)
		if hdr.ID != 42 || len(addrs) != 1 || addrs[0] != srv.addr {
			t.Errorf("tcp=%v: forwarded answer %+v %v", tcp, hdr, addrs)
		}
	}
	if got := srv.asked(); len(got) != 2 || got[0] != "www.example.com." {
		t.Errorf("server asked %q", got)
	}

	// No server answers: SERVFAIL.
	h.forward = (&dnsForwarder{servers: []string{deadAddr}, dial: d.DialContext}).forward
	start := time.Now()
	resp := h.handle(ctx, dnsQuery(t, 43, "www.example.com.", dnsmessage.TypeA), true)
	if hdr, _ := parseDNSAnswer(t, resp); hdr.RCode != dnsmessage.RCodeServerFailure || hdr.ID != 43 {
		t.Errorf("dead server: %+v", hdr)
	}
	if time.Since(start) > dnsForwardTimeout+time.Second {
		t.Errorf("SERVFAIL took %v", time.Since(start))
	}
}

// FuzzDNSAnswer feeds arbitrary messages to the resolver's local answering:
// it must not panic, and whatever it answers must be a well-formed response
// to the same ID.
func FuzzDNSAnswer(f *testing.F) {
	f.Add(dnsQuery(f, 1, "db.vpc.internal.", dnsmessage.TypeA))
	f.Add(dnsQuery(f, 2, "x.B.LOCAL.", dnsmessage.TypeAAAA))
	f.Add(dnsQuery(f, 3, "example.com.", dnsmessage.TypeA))
	f.Add(dnsQuery(f, 4, "vpc.internal.", dnsmessage.TypeMX))
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	h := newTestDNSHandler(f)
	f.Fuzz(func(t *testing.T, q []byte) {
		resp, ok := h.answerLocal(q)
		if !ok || resp == nil {
			if sf := servfail(q); sf != nil {
				var m dnsmessage.Message
				if err := m.Unpack(sf); err != nil || !m.Response {
					t.Fatalf("bad SERVFAIL %x: %v", sf, err)
				}
			}
			return
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
		if !m.Response || len(q) < 2 || m.ID != uint16(q[0])<<8|uint16(q[1]) {
			t.Fatalf("answer header %+v to %x", m.Header, q)
		}
		for _, a := range m.Answers {
			r, isA := a.Body.(*dnsmessage.AResource)
			if !isA || !h.pool.Contains(netip.AddrFrom4(r.A)) {
				t.Fatalf("unexpected answer %v", a)
			}
		}
	})
}
