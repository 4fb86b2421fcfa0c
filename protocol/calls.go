package protocol

// Calls: the HTTP/1.x calls of a session's connections, read on the wire
// by the backend (docs/calls.md).
const (
	// MethodInterconnectCall is a notification for each HTTP call of an
	// app (and each TLS connection), when its response ends.
	MethodInterconnectCall = "interconnect/call"
	// MethodInterconnectCalls returns the last calls the backend keeps (a
	// bounded ring per client).
	MethodInterconnectCalls = "interconnect/calls"
	// MethodInterconnectHAR returns the kept calls as a HAR 1.2 log.
	MethodInterconnectHAR = "interconnect/har"
)

// Call directions and paths.
const (
	DirectionOutbound = "outbound" // the local app calls the cloud
	DirectionInbound  = "inbound"  // the cloud calls an exposed local port

	ViaChannel   = "channel"   // SOCKS5/HTTP proxy (exec, java without the agent, docker sidecar)
	ViaJavaAgent = "javaagent" // a connect redirected by the Java agent
	ViaExpose    = "expose"    // an exposed local port
)

// CallRecord (interconnect/call notification, interconnect/calls result):
// one HTTP request and its response, or one TLS connection (tls true: only
// the server name, bytes and duration are known).
type CallRecord struct {
	SessionID string `json:"sessionId"` // the launch or prepared session
	// Conn numbers the connection: calls with the same number were made
	// on one (keep-alive) connection.
	Conn      uint64 `json:"conn"`
	Direction string `json:"direction"` // outbound or inbound
	Via       string `json:"via"`       // channel, javaagent or expose
	Start     string `json:"start"`     // RFC 3339 with fractions: the request's first byte
	Method    string `json:"method,omitempty"`
	URL       string `json:"url"` // http://host/path?query (https://sni/ for TLS)
	Host      string `json:"host"`
	Path      string `json:"path,omitempty"`
	// Status is 0 when no response was read (see error).
	Status     int     `json:"status"`
	TTFBMs     float64 `json:"ttfbMs"`     // to the first byte of the response
	DurationMs float64 `json:"durationMs"` // to the last byte of the response
	Sent       int64   `json:"sent"`       // request bytes, head and body
	Received   int64   `json:"received"`   // response bytes, head and body
	// TraceID from traceparent, b3 / X-B3-TraceId or sw8, when sent.
	TraceID string `json:"traceId,omitempty"`
	TLS     bool   `json:"tls,omitempty"`
	SNI     string `json:"sni,omitempty"`
	Target  string `json:"target"` // host:port the connection was made to
	// OpenedBy is the code that opened the connection (Java agent: the
	// first non-JDK stack frame, e.g. "com.acme.OrderClient.place(OrderClient.java:42)").
	OpenedBy string `json:"openedBy,omitempty"`
	Error    string `json:"error,omitempty"`
	// Headers (interconnect/calls with headers: true only); Authorization,
	// Proxy-Authorization, Cookie and Set-Cookie values are "[redacted]".
	RequestHeaders  []Header `json:"requestHeaders,omitempty"`
	ResponseHeaders []Header `json:"responseHeaders,omitempty"`
}

// RedactedValue replaces the values of Authorization, Proxy-Authorization,
// Cookie and Set-Cookie headers.
const RedactedValue = "[redacted]"

// Header is one HTTP header.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// InterconnectCallsParams (interconnect/calls).
type InterconnectCallsParams struct {
	// SessionID (a launchId or a prepared sessionId) selects one session's
	// calls; empty: all of this client's, also of ended launches.
	SessionID string `json:"sessionId,omitempty"`
	// Limit returns at most the newest Limit calls; 0: all that are kept.
	Limit int `json:"limit,omitempty"`
	// Headers includes the (redacted) headers.
	Headers bool `json:"headers,omitempty"`
}

// InterconnectCallsResult (interconnect/calls): oldest first.
type InterconnectCallsResult struct {
	Calls []CallRecord `json:"calls"`
	// Dropped counts the older calls (of any session) no longer kept.
	Dropped int64 `json:"dropped"`
}

// InterconnectHARParams (interconnect/har); the result is a HAR 1.2 object
// ({"log": {...}}) that browser devtools import.
type InterconnectHARParams struct {
	SessionID string `json:"sessionId,omitempty"`
}
