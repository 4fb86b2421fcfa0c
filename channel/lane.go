package channel

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync"
)

// Lanes (docs/lanes.md): the app's outgoing HTTP/1.x requests carry the
// developer's lane, so a call that goes laptop → cloud → laptop stays in
// the lane. WithLaneHeader is the whole hook: a wrapper around the upstream
// connection that adds the header to every request head written on it.

// maxLaneHead bounds a buffered request head; a longer one is passed on
// unchanged.
const maxLaneHead = 64 << 10

// httpMethods: a stream is taken for HTTP/1.x only when it starts with one
// of these and a space.
var httpMethods = []string{"GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "OPTIONS ", "PATCH ", "TRACE "}

// WithLaneHeader returns c with `X-Tether-Lane: lane` added to every HTTP/1.x
// request head written to it (keep-alive and pipelined requests included;
// bodies are followed by Content-Length or chunked encoding). A request
// that already has the header keeps its own. Anything that does not start
// as an HTTP/1.x request (TLS, database protocols), and everything after an
// Upgrade or CONNECT, passes unchanged.
func WithLaneHeader(c net.Conn, lane string) net.Conn {
	return &laneConn{Conn: c, inj: laneInjector{line: "X-Tether-Lane: " + lane + "\r\n"}}
}

type laneConn struct {
	net.Conn
	mu  sync.Mutex
	inj laneInjector
}

func (c *laneConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.inj.feed(b)
	if len(out) > 0 {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// CloseWrite flushes a partial head and half-closes the upstream.
func (c *laneConn) CloseWrite() error {
	c.mu.Lock()
	rest := c.inj.flush()
	c.mu.Unlock()
	if len(rest) > 0 {
		if _, err := c.Conn.Write(rest); err != nil {
			return err
		}
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

type laneState int

const (
	stHead      laneState = iota // reading a request head
	stBody                       // n body bytes left
	stChunk                      // reading a chunk-size line
	stChunkData                  // n bytes of chunk data + CRLF left
	stTrailer                    // reading trailer lines until an empty one
	stPass                       // not (or no longer) HTTP: pass everything
)

// laneInjector is the state machine of WithLaneHeader. feed takes the bytes
// the app wrote and returns the bytes to send.
type laneInjector struct {
	line  string
	state laneState
	buf   []byte // partial head, chunk-size or trailer line
	n     int64
}

func (l *laneInjector) flush() []byte {
	if l.state != stHead {
		return nil // other states buffer for parsing only: already sent
	}
	b := l.buf
	l.state, l.buf = stPass, nil
	return b
}

func (l *laneInjector) feed(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		switch l.state {
		case stPass:
			if out == nil {
				return b
			}
			return append(out, b...)
		case stBody, stChunkData:
			k := int(min(int64(len(b)), l.n))
			out = append(out, b[:k]...)
			b = b[k:]
			l.n -= int64(k)
			if l.n == 0 {
				if l.state == stBody {
					l.state = stHead
				} else {
					l.state = stChunk
				}
			}
		case stChunk, stTrailer:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				l.buf = append(l.buf, b...)
				out = append(out, b...)
				b = nil
				if len(l.buf) > 4096 {
					l.state, l.buf = stPass, nil
				}
				continue
			}
			line := append(l.buf, b[:i+1]...)
			out = append(out, b[:i+1]...)
			b = b[i+1:]
			l.buf = nil
			s := strings.TrimSpace(string(line))
			if l.state == stTrailer {
				if s == "" {
					l.state = stHead
				}
				continue
			}
			size, _, _ := strings.Cut(s, ";")
			n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
			switch {
			case err != nil || n < 0:
				l.state = stPass
			case n == 0:
				l.state = stTrailer
			default:
				l.state, l.n = stChunkData, n+2
			}
		case stHead:
			l.buf = append(l.buf, b...)
			b = nil
			if !l.plausible() {
				l.state = stPass
				out = append(out, l.buf...)
				l.buf = nil
				continue
			}
			end := bytes.Index(l.buf, []byte("\r\n\r\n"))
			if end < 0 {
				if len(l.buf) > maxLaneHead {
					l.state = stPass
					out = append(out, l.buf...)
					l.buf = nil
				}
				continue
			}
			head, rest := l.buf[:end+4], l.buf[end+4:]
			l.buf = nil
			out = append(out, l.request(head)...)
			b = rest
		}
	}
	return out
}

// plausible: the buffered head can still be an HTTP/1.x request.
func (l *laneInjector) plausible() bool {
	b := l.buf
	ok := false
	for _, m := range httpMethods {
		n := min(len(b), len(m))
		if string(b[:n]) == m[:n] {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	if i := bytes.Index(b, []byte("\r\n")); i >= 0 {
		f := strings.Fields(string(b[:i]))
		return len(f) == 3 && strings.HasPrefix(f[2], "HTTP/1.")
	}
	return true
}

// request returns head with the lane line added after the request line and
// sets the state for the body.
func (l *laneInjector) request(head []byte) []byte {
	lines := strings.Split(string(head[:len(head)-4]), "\r\n")
	l.state = stHead
	has, chunked, upgrade := false, false, false
	var length int64
	for _, h := range lines[1:] {
		k, v, _ := strings.Cut(h, ":")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch k {
		case "x-tether-lane":
			has = true
		case "content-length":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				length = n
			} else {
				upgrade = true // unknown framing: stop parsing
			}
		case "transfer-encoding":
			codings := strings.Split(strings.ToLower(v), ",")
			chunked = strings.TrimSpace(codings[len(codings)-1]) == "chunked"
			if !chunked {
				upgrade = true
			}
		case "upgrade":
			upgrade = true
		}
	}
	switch {
	case upgrade:
		l.state = stPass
	case chunked:
		l.state = stChunk
	case length > 0:
		l.state, l.n = stBody, length
	}
	if has {
		return head
	}
	i := bytes.Index(head, []byte("\r\n")) + 2
	out := make([]byte, 0, len(head)+len(l.line))
	out = append(out, head[:i]...)
	out = append(out, l.line...)
	return append(out, head[i:]...)
}
