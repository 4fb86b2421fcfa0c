package calls

import (
	"bytes"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the reader: past them it stops reading the connection (the
// bytes still flow; only the calls are not reported).
const (
	maxHead    = 16 << 10 // request or response line and headers
	maxLine    = 1 << 10  // a chunk-size or trailer line
	maxPending = 32       // pipelined requests waiting for their response
	maxHello   = 16<<10 + 5
)

// Info describes the connection a Conn reads.
type Info struct {
	Target  string // host:port dialled; the host of calls without a Host header
	Inbound bool
	Opener  string
	Via     string // the copy path, for whoever shows the calls
	Conn    uint64 // 0: the next number of this process
}

var connSeq atomic.Uint64

// Conn reads the calls of one connection. Feed the bytes of each direction
// to Requests and Responses before forwarding them (a response must never
// be seen before its request); call End when the connection is over. Its
// methods are safe for the two copying goroutines.
//
// Calls are passed to emit as their response ends (on the goroutine of the
// response direction, or of End), in order.
type Conn struct {
	mu       sync.Mutex
	info     Info
	emit     func(Call)
	now      func() time.Time
	req      half
	resp     half
	pending  []*Call
	stopped  bool // not reading any more: garbage, upgrade, CONNECT, limits
	ended    bool
	tls      *Call // the TLS connection's entry, emitted by End
	reqSide  Side
	respSide Side
}

// Side is one direction of a Conn.
type Side struct {
	c    *Conn
	resp bool
}

// NewConn starts reading a connection; emit receives its calls.
func NewConn(info Info, emit func(Call)) *Conn {
	if info.Conn == 0 {
		info.Conn = connSeq.Add(1)
	}
	c := &Conn{info: info, emit: emit, now: time.Now}
	c.reqSide = Side{c: c}
	c.respSide = Side{c: c, resp: true}
	return c
}

// Requests is the client-to-server direction.
func (c *Conn) Requests() *Side { return &c.reqSide }

// Responses is the server-to-client direction.
func (c *Conn) Responses() *Side { return &c.respSide }

// Write reads p; it never fails (an io.Writer for io.TeeReader and the like).
func (s *Side) Write(p []byte) (int, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return len(p), nil
	}
	if c.stopped {
		if c.tls != nil {
			c.count(s.resp, int64(len(p)))
		}
		return len(p), nil
	}
	if s.resp {
		c.feedResponse(p)
	} else {
		c.feedRequest(p)
	}
	return len(p), nil
}

// Skip says how many of the next bytes of this direction the reader does
// not need to see (a body of known length): the copier may move them
// without looking and report them with Skipped. It is math.MaxInt64 once
// the reader has stopped, 0 when it needs the next bytes.
func (s *Side) Skip() int64 {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.ended {
		return math.MaxInt64
	}
	h := &c.req
	if s.resp {
		h = &c.resp
	}
	switch h.st {
	case stBody, stChunkData:
		return h.remain
	case stUntilClose:
		return math.MaxInt64
	}
	return 0
}

// Skipped accounts for n bytes moved without Write, at most Skip().
func (s *Side) Skipped(n int64) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || n <= 0 {
		return
	}
	if c.stopped {
		if c.tls != nil {
			c.count(s.resp, n)
		}
		return
	}
	h := &c.req
	if s.resp {
		h = &c.resp
	}
	switch h.st {
	case stBody, stChunkData:
		n = min(n, h.remain)
		h.remain -= n
		h.bytes += n
		if h.remain == 0 {
			if h.st == stChunkData {
				h.st = stChunkCRLF
			} else {
				c.messageDone(s.resp)
			}
		}
	case stUntilClose:
		h.bytes += n
	}
}

// End reports the calls still open when the connection ends: a response
// read until close ends here; requests without a full response are
// reported with Err set. A TLS connection is reported here.
func (c *Conn) End() {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	now := c.now()
	var out []Call
	if c.tls != nil {
		t := *c.tls
		t.Duration = now.Sub(t.Start)
		out = append(out, t)
	}
	if !c.stopped && c.resp.st == stUntilClose && len(c.pending) > 0 {
		out = append(out, c.finish(now))
	}
	for _, p := range c.pending {
		if p.Err == "" {
			if p.Status == 0 {
				p.Err = "connection closed before the response"
			} else {
				p.Err = "connection closed before the end of the response"
				p.Received = c.resp.bytes
			}
		}
		p.Duration = now.Sub(p.Start)
		out = append(out, *p)
	}
	c.pending = nil
	c.mu.Unlock()
	for _, cl := range out {
		c.emit(cl)
	}
}

// count adds TLS bytes.
func (c *Conn) count(resp bool, n int64) {
	if resp {
		c.tls.Received += n
	} else {
		c.tls.Sent += n
	}
}

// stop gives up reading: the pending calls are reported with why.
func (c *Conn) stop(why string) {
	if c.stopped {
		return
	}
	c.stopped = true
	now := c.now()
	for _, p := range c.pending {
		if p.Err == "" && why != "" {
			p.Err = why
		}
		p.Duration = now.Sub(p.Start)
		c.emitLocked(*p)
	}
	c.pending = nil
	c.req.buf, c.resp.buf, c.req.line, c.resp.line = nil, nil, nil, nil
}

// emitLocked reports a call while c.mu is held: emit must not call back
// into this Conn (it does not: sinks only store or print).
func (c *Conn) emitLocked(cl Call) { c.emit(cl) }

// Message states of one direction.
type state uint8

const (
	stHead       state = iota // reading a start line and headers
	stBody                    // remain bytes of a Content-Length body
	stChunkSize               // reading a chunk-size line
	stChunkData               // remain bytes of a chunk
	stChunkCRLF               // the CRLF after a chunk
	stTrailer                 // trailer lines until an empty one
	stUntilClose              // a response body that ends with the connection
	stTLS                     // (requests) reading a TLS ClientHello record
)

// half is the parser state of one direction.
type half struct {
	st     state
	buf    []byte    // head bytes so far
	first  time.Time // when the first byte of the current head came
	remain int64
	line   []byte
	bytes  int64  // bytes of the current message
	cur    *Call  // requests: the call being sent
	seq    uint64 // requests: how many were read
}

func (c *Conn) feedRequest(p []byte) {
	h := &c.req
	for len(p) > 0 && !c.stopped {
		switch h.st {
		case stHead:
			if len(h.buf) == 0 {
				// Skip the CRLFs some clients send between requests.
				for len(p) > 0 && (p[0] == '\r' || p[0] == '\n') {
					p = p[1:]
					h.bytes++
				}
				if len(p) == 0 {
					return
				}
				if p[0] == 0x16 && len(c.pending) == 0 && h.cur == nil && c.tls == nil && c.reqCount() == 0 {
					h.st = stTLS
					h.first = c.now()
					continue
				}
				if !isTokenByte(p[0]) {
					c.stop("")
					return
				}
				h.first = c.now()
			}
			n, ok := h.head(p)
			if !ok {
				c.stop("request head too large or malformed")
				return
			}
			p = p[n:]
			if h.done() {
				c.requestHead()
			}
		case stTLS:
			h.buf = append(h.buf, p[:min(len(p), maxHello-len(h.buf))]...)
			h.bytes += int64(len(p))
			p = nil
			if len(h.buf) >= 5 {
				rec := 5 + int(h.buf[3])<<8 | int(h.buf[4])
				if h.buf[1] != 3 || rec > maxHello {
					c.stop("")
					return
				}
				if len(h.buf) >= rec || len(h.buf) >= maxHello {
					c.startTLS(h.first, h.bytes, h.buf[5:min(rec, len(h.buf))])
					return
				}
			}
		default:
			n := c.body(h, p, false)
			p = p[n:]
		}
	}
}

// reqCount is how many requests this connection has carried.
func (c *Conn) reqCount() uint64 { return c.req.seq }

func (c *Conn) startTLS(start time.Time, sent int64, hello []byte) {
	c.tls = &Call{Start: start, TLS: true, SNI: ServerName(hello), Sent: sent, Target: c.info.Target,
		Inbound: c.info.Inbound, Opener: c.info.Opener, Via: c.info.Via, Conn: c.info.Conn}
	if c.tls.SNI != "" {
		c.tls.Host = c.tls.SNI
	} else {
		c.tls.Host = hostOf(c.info.Target)
	}
	c.tls.Received = c.resp.bytes
	c.stop("")
}

func (c *Conn) feedResponse(p []byte) {
	h := &c.resp
	for len(p) > 0 && !c.stopped {
		switch h.st {
		case stHead:
			if len(h.buf) == 0 {
				if len(c.pending) == 0 {
					// Bytes no request asked for: not HTTP (a server
					// that speaks first), or we lost track.
					if c.req.st == stTLS {
						h.bytes += int64(len(p))
						return
					}
					c.stop("")
					return
				}
				h.first = c.now()
			}
			n, ok := h.head(p)
			if !ok {
				c.stop("response head too large or malformed")
				return
			}
			p = p[n:]
			if h.done() {
				c.responseHead()
			}
		default:
			n := c.body(h, p, true)
			p = p[n:]
		}
	}
}

// head appends head bytes from p until the empty line; it returns how many
// bytes of p it took and false past maxHead.
func (h *half) head(p []byte) (int, bool) {
	old := len(h.buf)
	from := max(0, old-3)
	take := min(len(p), maxHead-old)
	h.buf = append(h.buf, p[:take]...)
	if i := headEnd(h.buf[from:]); i >= 0 {
		end := from + i
		h.buf = h.buf[:end]
		n := end - old
		h.bytes += int64(n)
		h.remain = -1 // marks "head complete" for done()
		return n, true
	}
	if len(h.buf) >= maxHead {
		return 0, false
	}
	h.bytes += int64(take)
	return take, true
}

func (h *half) done() bool { return h.remain == -1 }

// headEnd returns the index just past the blank line ending a head in b,
// or -1.
func headEnd(b []byte) int {
	i := bytes.Index(b, []byte("\n\r\n"))
	j := bytes.Index(b, []byte("\n\n"))
	switch {
	case i < 0 && j < 0:
		return -1
	case i < 0 || (j >= 0 && j < i):
		return j + 2
	}
	return i + 3
}

// lines splits a head into its lines without the line ends.
func lines(b []byte) []string {
	s := strings.Split(string(b), "\n")
	out := s[:0]
	for _, l := range s {
		l = strings.TrimSuffix(l, "\r")
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Request head flags.
type framing struct {
	length  int64 // -1 none
	chunked bool
	close   bool
	upgrade bool
}

// headers parses header lines into hs and returns the framing; ok false on
// a malformed line.
func headers(ls []string, hs *[]Header, trace *string, host *string) (framing, bool) {
	f := framing{length: -1}
	for _, l := range ls {
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || strings.TrimRight(name, " \t") != name || !token(name) {
			if l[0] == ' ' || l[0] == '\t' { // obsolete line folding: ignore
				continue
			}
			return f, false
		}
		value = strings.TrimSpace(value)
		*hs = keepHeader(*hs, name, value)
		switch strings.ToLower(name) {
		case "content-length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				return f, false
			}
			f.length = n
		case "transfer-encoding":
			f.chunked = strings.HasSuffix(strings.ToLower(strings.TrimSpace(value)), "chunked")
		case "connection":
			v := strings.ToLower(value)
			f.close = f.close || strings.Contains(v, "close")
			f.upgrade = f.upgrade || strings.Contains(v, "upgrade")
		case "host":
			if host != nil && *host == "" {
				*host = value
			}
		default:
			if trace != nil && *trace == "" {
				*trace = traceID(name, value)
			}
		}
	}
	return f, true
}

func (c *Conn) requestHead() {
	h := &c.req
	ls := lines(h.buf)
	h.buf = h.buf[:0]
	h.remain = 0
	if len(ls) == 0 {
		c.stop("")
		return
	}
	method, rest, ok1 := strings.Cut(ls[0], " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !token(method) || target == "" || !strings.HasPrefix(proto, "HTTP/1.") {
		c.stop("")
		return
	}
	cl := &Call{Start: h.first, Method: method, Proto: proto, Target: c.info.Target,
		Inbound: c.info.Inbound, Opener: c.info.Opener, Via: c.info.Via, Conn: c.info.Conn}
	f, ok := headers(ls[1:], &cl.RequestHeaders, &cl.TraceID, &cl.Host)
	if !ok {
		c.stop("")
		return
	}
	// Absolute form (a proxy request): the host and path are in the URI.
	if i := strings.Index(target, "://"); i > 0 && target[0] != '/' {
		rest := target[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			cl.Host, target = rest, "/"
		} else {
			cl.Host, target = rest[:j], rest[j:]
		}
	}
	if cl.Host == "" {
		if method == "CONNECT" {
			cl.Host = target
		} else {
			cl.Host = hostOf(c.info.Target)
		}
	}
	if len(target) > maxPath {
		target = target[:maxPath] + "…"
	}
	cl.Path = target
	if len(c.pending) >= maxPending {
		c.stop("too many pipelined requests")
		return
	}
	h.seq++
	h.cur = cl
	c.pending = append(c.pending, cl)
	switch {
	case method == "CONNECT":
		// What follows is a tunnel: wait for the answer, read no more requests.
		cl.Sent = h.bytes
		h.st = stUntilClose
	case f.chunked:
		h.st = stChunkSize
	case f.length > 0:
		h.st, h.remain = stBody, f.length
	default:
		c.messageDone(false)
	}
}

func (c *Conn) responseHead() {
	h := &c.resp
	ls := lines(h.buf)
	h.buf = h.buf[:0]
	h.remain = 0
	if len(ls) == 0 {
		c.stop("")
		return
	}
	proto, rest, _ := strings.Cut(ls[0], " ")
	code, reason, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil || len(code) != 3 || status < 100 {
		c.stop("")
		return
	}
	cl := c.pending[0]
	var hs []Header
	f, ok := headers(ls[1:], &hs, nil, nil)
	if !ok {
		c.stop("")
		return
	}
	cl.Status, cl.Reason = status, reason
	if status >= 200 || status == 101 {
		cl.TTFB = h.first.Sub(cl.Start)
		cl.ResponseHeaders = hs
	}
	switch {
	case status == 101 || cl.Method == "CONNECT" && status/100 == 2:
		// Another protocol (WebSocket, a tunnel) follows: report and stop.
		c.finishEmit()
		c.stop("")
		return
	case status < 200:
		// Interim (100 Continue, 103 Early Hints): the final one follows.
		cl.Status = 0
		return
	case cl.Method == "HEAD" || status == 204 || status == 304:
		c.messageDone(true)
	case f.chunked:
		h.st = stChunkSize
	case f.length >= 0:
		if f.length == 0 {
			c.messageDone(true)
		} else {
			h.st, h.remain = stBody, f.length
		}
	default:
		h.st = stUntilClose
	}
}

// body consumes body bytes of p in h's state and returns how many.
func (c *Conn) body(h *half, p []byte, resp bool) int {
	switch h.st {
	case stBody, stChunkData:
		n := min(int64(len(p)), h.remain)
		h.remain -= n
		h.bytes += n
		if h.remain == 0 {
			if h.st == stChunkData {
				h.st = stChunkCRLF
			} else {
				c.messageDone(resp)
			}
		}
		return int(n)
	case stChunkCRLF:
		// CRLF (or a bare LF) after the chunk data.
		switch p[0] {
		case '\r':
			h.bytes++
			return 1
		case '\n':
			h.bytes++
			h.st = stChunkSize
			return 1
		}
		c.stop("malformed chunked body")
		return len(p)
	case stChunkSize, stTrailer:
		i := bytes.IndexByte(p, '\n')
		take := len(p)
		if i >= 0 {
			take = i + 1
		}
		if len(h.line)+take > maxLine {
			c.stop("chunk line too long")
			return len(p)
		}
		h.line = append(h.line, p[:take]...)
		h.bytes += int64(take)
		if i < 0 {
			return take
		}
		line := strings.TrimRight(string(h.line), "\r\n")
		h.line = h.line[:0]
		if h.st == stTrailer {
			if line == "" {
				c.messageDone(resp)
			}
			return take
		}
		size, _, _ := strings.Cut(line, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil || n < 0 {
			c.stop("malformed chunked body")
			return len(p)
		}
		if n == 0 {
			h.st = stTrailer
		} else {
			h.st, h.remain = stChunkData, n
		}
		return take
	case stUntilClose:
		h.bytes += int64(len(p))
		return len(p)
	}
	return len(p)
}

// messageDone ends the current message of a direction.
func (c *Conn) messageDone(resp bool) {
	if !resp {
		h := &c.req
		if h.cur != nil {
			h.cur.Sent = h.bytes
			h.cur = nil
		}
		h.bytes, h.st, h.remain = 0, stHead, 0
		return
	}
	c.finishEmit()
}

// finish completes the oldest pending call with the response read so far.
func (c *Conn) finish(now time.Time) Call {
	h := &c.resp
	cl := c.pending[0]
	c.pending[0] = nil
	c.pending = c.pending[1:]
	cl.Received = h.bytes
	cl.Duration = now.Sub(cl.Start)
	if cl == c.req.cur {
		cl.Sent = c.req.bytes // early response: the request body is still coming
	}
	h.bytes, h.st, h.remain = 0, stHead, 0
	return *cl
}

func (c *Conn) finishEmit() { c.emitLocked(c.finish(c.now())) }

// token reports whether s is an HTTP token (method, header name).
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// hostOf is the host of a target for a URL: port 80 dropped.
func hostOf(target string) string {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return target
	}
	if port == "80" {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return target
}
