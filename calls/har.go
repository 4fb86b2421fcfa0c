package calls

import (
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"time"
)

// HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/), the subset that
// browser devtools import: one entry per HTTP call. Bodies are not kept, so
// content is empty; TLS connections have no request to show and are left out.

type harLog struct {
	Log harBody `json:"log"`
}

type harBody struct {
	Version string     `json:"version"`
	Creator harCreator `json:"creator"`
	Pages   []struct{} `json:"pages"`
	Entries []harEntry `json:"entries"`
	Comment string     `json:"comment,omitempty"`
}

type harCreator struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type harEntry struct {
	StartedDateTime string      `json:"startedDateTime"`
	Time            float64     `json:"time"`
	Request         harRequest  `json:"request"`
	Response        harResponse `json:"response"`
	Cache           struct{}    `json:"cache"`
	Timings         harTimings  `json:"timings"`
	Connection      string      `json:"connection,omitempty"`
	Comment         string      `json:"comment,omitempty"`
	TraceID         string      `json:"_traceId,omitempty"`
	Opener          string      `json:"_opener,omitempty"`
	Session         string      `json:"_session,omitempty"`
	Inbound         bool        `json:"_inbound,omitempty"`
}

type harRequest struct {
	Method      string     `json:"method"`
	URL         string     `json:"url"`
	HTTPVersion string     `json:"httpVersion"`
	Cookies     []struct{} `json:"cookies"`
	Headers     []Header   `json:"headers"`
	QueryString []Header   `json:"queryString"`
	HeadersSize int        `json:"headersSize"`
	BodySize    int64      `json:"bodySize"`
}

type harResponse struct {
	Status      int        `json:"status"`
	StatusText  string     `json:"statusText"`
	HTTPVersion string     `json:"httpVersion"`
	Cookies     []struct{} `json:"cookies"`
	Headers     []Header   `json:"headers"`
	Content     harContent `json:"content"`
	RedirectURL string     `json:"redirectURL"`
	HeadersSize int        `json:"headersSize"`
	BodySize    int64      `json:"bodySize"`
	Comment     string     `json:"comment,omitempty"`
}

type harContent struct {
	Size     int64  `json:"size"`
	MimeType string `json:"mimeType"`
	Comment  string `json:"comment,omitempty"`
}

type harTimings struct {
	Blocked float64 `json:"blocked"`
	DNS     float64 `json:"dns"`
	Connect float64 `json:"connect"`
	Send    float64 `json:"send"`
	Wait    float64 `json:"wait"`
	Receive float64 `json:"receive"`
	SSL     float64 `json:"ssl"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// WriteHAR writes calls as a HAR 1.2 log; creatorVersion is the tool's
// version.
func WriteHAR(w io.Writer, calls []Call, creatorVersion string) error {
	h := harLog{Log: harBody{Version: "1.2", Creator: harCreator{Name: "tether", Version: creatorVersion},
		Pages: []struct{}{}, Entries: []harEntry{},
		Comment: "HTTP calls read on the wire by Tether; bodies are not recorded and credentials are redacted"}}
	for i := range calls {
		c := &calls[i]
		if c.TLS || c.Method == "" {
			continue
		}
		h.Log.Entries = append(h.Log.Entries, harOf(c))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(h)
}

func harOf(c *Call) harEntry {
	proto := c.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	wait := max(ms(c.TTFB), 0)
	recv := max(ms(c.Duration-c.TTFB), 0)
	if c.Status == 0 {
		wait, recv = max(ms(c.Duration), 0), 0
	}
	e := harEntry{
		StartedDateTime: c.Start.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Time:            wait + recv,
		Request: harRequest{Method: c.Method, URL: c.URL(), HTTPVersion: proto, Cookies: []struct{}{},
			Headers: nonNil(c.RequestHeaders), QueryString: query(c.Path), HeadersSize: -1, BodySize: -1},
		Response: harResponse{Status: c.Status, StatusText: c.Reason, HTTPVersion: proto, Cookies: []struct{}{},
			Headers: nonNil(c.ResponseHeaders), RedirectURL: header(c.ResponseHeaders, "Location"),
			HeadersSize: -1, BodySize: -1, Comment: c.Err,
			Content: harContent{Size: 0, MimeType: header(c.ResponseHeaders, "Content-Type"), Comment: "not recorded"}},
		Timings: harTimings{Blocked: -1, DNS: -1, Connect: -1, Send: 0, Wait: wait, Receive: recv, SSL: -1},
		TraceID: c.TraceID,
		Opener:  c.Opener,
		Session: c.Session,
		Inbound: c.Inbound,
		Comment: c.Err,
	}
	if c.Conn != 0 {
		e.Connection = c.Session + "/" + itoa(c.Conn)
	}
	return e
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

func nonNil(h []Header) []Header {
	if h == nil {
		return []Header{}
	}
	return h
}

func header(hs []Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

func query(path string) []Header {
	out := []Header{}
	_, q, ok := strings.Cut(path, "?")
	if !ok {
		return out
	}
	for _, kv := range strings.Split(q, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			v = uv
		}
		out = append(out, Header{Name: k, Value: v})
	}
	return out
}
