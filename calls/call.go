// Package calls reads HTTP/1.x calls passively from the bytes of a
// connection that is being copied elsewhere: one Call per request and
// response (method, host, path, status, timings, bytes, trace id), the
// server name (SNI) of a TLS connection, and a bounded ring of recent calls
// with HAR export. It never changes or holds back the bytes it sees.
package calls

import (
	"encoding/base64"
	"strings"
	"time"
)

// Call is one HTTP request and its response on a connection, or (TLS set)
// one TLS connection, of which only the server name is known.
type Call struct {
	Start    time.Time     // first byte of the request
	Method   string        // GET, POST, ...; "" for a TLS connection
	Host     string        // Host header, else the dialled target's host (port kept unless 80)
	Path     string        // request target as sent (origin form), e.g. /orders?id=1
	Proto    string        // HTTP/1.1
	Status   int           // 0 when no response was read
	Reason   string        // status text as sent, e.g. "Not Found"
	TTFB     time.Duration // Start to the first byte of the final response
	Duration time.Duration // Start to the last byte of the response
	Sent     int64         // bytes of the request (head and body)
	Received int64         // bytes of the response (interim responses included)
	TraceID  string        // from traceparent, b3 / X-B3-TraceId or sw8
	TLS      bool          // a TLS connection: only SNI, Sent, Received, Duration are known
	SNI      string        // TLS server name
	Err      string        // why the call is incomplete, e.g. "connection closed before the response"

	// Headers as sent, in order, at most maxHeaders each, values cut at
	// maxValue bytes; credentials are redacted (see Redacted).
	RequestHeaders  []Header
	ResponseHeaders []Header

	// From the connection (Info).
	Target  string // host:port the connection was made to
	Inbound bool   // a call from the cloud to a local port (expose)
	Opener  string // the code that opened the connection, e.g. a Java frame
	Via     string // the copy path (Info.Via)
	Conn    uint64 // connection number (Info.Conn): calls with the same number shared a connection

	// Session is set by whoever collects the calls (the launch or session id).
	Session string
}

// Header is one request or response header.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// URL is the call's URL: http://host/path, or https://sni/ for TLS.
func (c *Call) URL() string {
	if c.TLS {
		return "https://" + c.SNI + "/"
	}
	p := c.Path
	if p == "" || p == "*" {
		p = "/"
	} else if p[0] != '/' {
		return p // authority form (CONNECT) or an absolute URI
	}
	return "http://" + c.Host + p
}

// Limits of what a call keeps.
const (
	maxHeaders = 64
	maxValue   = 512
	maxPath    = 2048
)

// Redacted is the value kept for headers that carry credentials.
const Redacted = "[redacted]"

// secret reports whether a header's value is a credential: it is never kept.
func secret(name string) bool {
	switch strings.ToLower(name) {
	case "authorization", "proxy-authorization", "cookie", "set-cookie":
		return true
	}
	return false
}

func keepHeader(hs []Header, name, value string) []Header {
	if len(hs) >= maxHeaders {
		return hs
	}
	if secret(name) {
		value = Redacted
	} else if len(value) > maxValue {
		value = value[:maxValue] + "…"
	}
	return append(hs, Header{Name: name, Value: value})
}

// traceID extracts a trace id from a tracing header, "" if name is not one
// or the value is malformed.
func traceID(name, v string) string {
	switch strings.ToLower(name) {
	case "traceparent": // W3C: version-traceid-parentid-flags
		f := strings.Split(v, "-")
		if len(f) >= 4 && len(f[1]) == 32 && isHex(f[1]) {
			return strings.ToLower(f[1])
		}
	case "x-b3-traceid":
		if (len(v) == 16 || len(v) == 32) && isHex(v) {
			return strings.ToLower(v)
		}
	case "b3": // single header: traceid-spanid[-sampled[-parent]]
		id, _, _ := strings.Cut(v, "-")
		if (len(id) == 16 || len(id) == 32) && isHex(id) {
			return strings.ToLower(id)
		}
	case "sw8": // SkyWalking: sample-traceId(base64)-segmentId(base64)-...
		f := strings.Split(v, "-")
		if len(f) >= 3 {
			if b, err := base64.StdEncoding.DecodeString(f[1]); err == nil && len(b) > 0 && len(b) <= 128 && printable(b) {
				return string(b)
			}
		}
	}
	return ""
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}
