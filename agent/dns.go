package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tether-dev/tether/internal/routes"
)

// fakeTTL is the TTL of the fake addresses the sidecar's resolver hands out:
// short, so that a restarted sidecar's new map is picked up quickly.
const fakeTTL = 5

const (
	dnsForwardTimeout = 5 * time.Second  // one forwarded query, all servers
	dnsTCPIdle        = 10 * time.Second // an idle DNS-over-TCP client
	dnsMaxInflight    = 256              // concurrent forwarded UDP queries
	dnsMaxMsg         = 65535
)

// dnsHandler answers DNS queries: names under its domains get fake addresses,
// everything else goes to forward.
type dnsHandler struct {
	routes routes.Routes // Domains: the names answered with fake addresses
	pool   *routes.Pool
	log    *slog.Logger
	// forward sends a query to the original resolver and returns its answer
	// (over TCP when tcp is set).
	forward func(ctx context.Context, q []byte, tcp bool) ([]byte, error)
}

// local reports whether name (as in a question, with the trailing dot) is
// under one of the domains, and returns it lower-cased without the dot.
func (h *dnsHandler) local(name string) (string, bool) {
	n := routes.NormName(name)
	if !routes.ValidName(n) || !h.routes.MatchName(n) {
		return "", false
	}
	return n, true
}

// answerLocal returns the answer to q when the sidecar answers it itself; ok
// is false when q must be forwarded. A nil answer with ok set means drop q
// (it is not a well-formed query).
func (h *dnsHandler) answerLocal(q []byte) (resp []byte, ok bool) {
	var p dnsmessage.Parser
	hdr, err := p.Start(q)
	if err != nil {
		return nil, true // not even a header: drop
	}
	if hdr.Response {
		return nil, true
	}
	if hdr.OpCode != 0 {
		return nil, false
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return errorReply(hdr, nil, dnsmessage.RCodeFormatError), true
	}
	if len(qs) != 1 {
		return nil, false
	}
	question := qs[0]
	name, local := h.local(question.Name.String())
	if !local || question.Class != dnsmessage.ClassINET {
		return nil, false
	}
	rh := dnsmessage.Header{
		ID:                 hdr.ID,
		Response:           true,
		Authoritative:      true,
		RecursionDesired:   hdr.RecursionDesired,
		RecursionAvailable: true,
		RCode:              dnsmessage.RCodeSuccess,
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 128), rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, true
	}
	if err := b.Question(question); err != nil {
		return nil, true
	}
	if err := b.StartAnswers(); err != nil {
		return nil, true
	}
	if question.Type == dnsmessage.TypeA || question.Type == dnsmessage.TypeALL {
		a, err := h.pool.Addr(name)
		if err != nil {
			h.log.Warn("dns: no fake address", "name", name, "err", err)
			return errorReply(hdr, qs, dnsmessage.RCodeServerFailure), true
		}
		rr := dnsmessage.ResourceHeader{Name: question.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: fakeTTL}
		if err := b.AResource(rr, dnsmessage.AResource{A: a.As4()}); err != nil {
			return nil, true
		}
		h.log.Debug("dns: fake address", "name", name, "addr", a.String())
	}
	// AAAA and every other type: an empty NOERROR answer (the name exists,
	// with no record of that type), so that resolvers fall back to A.
	out, err := b.Finish()
	if err != nil {
		return nil, true
	}
	return out, true
}

// errorReply builds an answer with rcode to a query with header hdr
// (questions echoed if given).
func errorReply(hdr dnsmessage.Header, qs []dnsmessage.Question, rcode dnsmessage.RCode) []byte {
	rh := dnsmessage.Header{
		ID:                 hdr.ID,
		Response:           true,
		OpCode:             hdr.OpCode,
		RecursionDesired:   hdr.RecursionDesired,
		RecursionAvailable: true,
		RCode:              rcode,
	}
	b := dnsmessage.NewBuilder(nil, rh)
	if err := b.StartQuestions(); err != nil {
		return nil
	}
	for _, q := range qs {
		if err := b.Question(q); err != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// servfail is the SERVFAIL answer to q, or nil when q has no valid header.
func servfail(q []byte) []byte {
	var p dnsmessage.Parser
	hdr, err := p.Start(q)
	if err != nil || hdr.Response {
		return nil
	}
	qs, _ := p.AllQuestions()
	return errorReply(hdr, qs, dnsmessage.RCodeServerFailure)
}

// handle returns the answer to q: local, forwarded, or SERVFAIL when the
// forward fails. nil means send nothing.
func (h *dnsHandler) handle(ctx context.Context, q []byte, tcp bool) []byte {
	if resp, ok := h.answerLocal(q); ok {
		return resp
	}
	if h.forward == nil {
		return servfail(q)
	}
	resp, err := h.forward(ctx, q, tcp)
	if err != nil {
		h.log.Debug("dns: forward failed", "err", err)
		return servfail(q)
	}
	return resp
}

// serveUDP answers queries on pc until it is closed.
func (h *dnsHandler) serveUDP(ctx context.Context, pc net.PacketConn) {
	sem := make(chan struct{}, dnsMaxInflight)
	buf := make([]byte, dnsMaxMsg)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			h.log.Debug("dns: udp read", "err", err)
			continue
		}
		q := append([]byte(nil), buf[:n]...)
		if resp, ok := h.answerLocal(q); ok {
			if resp != nil {
				pc.WriteTo(resp, from)
			}
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // overloaded: the client retries
		}
		go func() {
			defer func() { <-sem }()
			if resp := h.handle(ctx, q, false); resp != nil {
				pc.WriteTo(resp, from)
			}
		}()
	}
}

// serveTCP answers DNS-over-TCP clients on ln until it is closed.
func (h *dnsHandler) serveTCP(ctx context.Context, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go h.serveTCPConn(ctx, c)
	}
}

func (h *dnsHandler) serveTCPConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(dnsTCPIdle))
		q, err := readTCPMsg(br)
		if err != nil {
			return
		}
		resp := h.handle(ctx, q, true)
		if resp == nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(dnsTCPIdle))
		if err := writeTCPMsg(c, resp); err != nil {
			return
		}
	}
}

func readTCPMsg(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	m := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, m); err != nil {
		return nil, err
	}
	return m, nil
}

func writeTCPMsg(w io.Writer, m []byte) error {
	if len(m) > dnsMaxMsg {
		return errors.New("dns: message too long")
	}
	b := make([]byte, 2+len(m))
	binary.BigEndian.PutUint16(b, uint16(len(m)))
	copy(b[2:], m)
	_, err := w.Write(b)
	return err
}

// readResolvConf returns the nameservers of a resolv.conf file as ip:53.
func readResolvConf(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseResolvConf(string(data)), nil
}

func parseResolvConf(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a, 53).String())
	}
	return out
}

// dnsForwarder sends queries to the original resolvers, in order, through
// dial (which marks its sockets so that they are not redirected back to us).
type dnsForwarder struct {
	servers []string
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (f *dnsForwarder) forward(ctx context.Context, q []byte, tcp bool) ([]byte, error) {
	if len(f.servers) == 0 {
		return nil, errors.New("no nameserver")
	}
	if len(q) < 2 {
		return nil, errors.New("short query")
	}
	ctx, cancel := context.WithTimeout(ctx, dnsForwardTimeout)
	defer cancel()
	per := dnsForwardTimeout / time.Duration(len(f.servers))
	var lastErr error
	for _, s := range f.servers {
		sctx, scancel := context.WithTimeout(ctx, per)
		resp, err := f.exchange(sctx, s, q, tcp)
		scancel()
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func (f *dnsForwarder) exchange(ctx context.Context, server string, q []byte, tcp bool) ([]byte, error) {
	network := "udp"
	if tcp {
		network = "tcp"
	}
	c, err := f.dial(ctx, network, server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if tcp {
		if err := writeTCPMsg(c, q); err != nil {
			return nil, err
		}
		return readTCPMsg(bufio.NewReader(c))
	}
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, dnsMaxMsg)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		// A connected UDP socket only gets datagrams from the server; skip
		// any stale answer to another ID.
		if n >= 2 && buf[0] == q[0] && buf[1] == q[1] {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}
