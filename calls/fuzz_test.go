package calls

import (
	"testing"
)

// FuzzConn feeds a conversation cut into pieces to a Conn: it must not
// panic, must report sane calls, and must keep no credential.
func FuzzConn(f *testing.F) {
	f.Add([]byte(get1), []byte(ok5), uint8(3))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nAuthorization: x\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
		[]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), uint8(1))
	f.Add([]byte("CONNECT a:1 HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\n\r\n"), uint8(0))
	f.Add([]byte("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"), []byte("\x16\x03\x03"), uint8(2))
	f.Fuzz(func(t *testing.T, reqs, resps []byte, cut uint8) {
		n := 0
		c := NewConn(Info{Target: "h:80"}, func(cl Call) {
			n++
			if cl.Sent < 0 || cl.Received < 0 || cl.Duration < 0 {
				t.Fatalf("bad call %+v", cl)
			}
			for _, h := range append(cl.RequestHeaders, cl.ResponseHeaders...) {
				if secret(h.Name) && h.Value != Redacted {
					t.Fatalf("credential kept: %+v", h)
				}
			}
		})
		step := int(cut)%17 + 1
		for len(reqs) > 0 || len(resps) > 0 {
			a, b := min(step, len(reqs)), min(step, len(resps))
			c.Requests().Write(reqs[:a])
			reqs = reqs[a:]
			if s := c.Responses().Skip(); s > 0 && s < int64(b) {
				c.Responses().Skipped(s)
				resps = resps[s:]
				b -= int(s)
			}
			c.Responses().Write(resps[:b])
			resps = resps[b:]
		}
		c.End()
		c.End()
		ServerName(reqs)
	})
}

// FuzzServerName: any bytes, no panic; a name found is a valid name.
func FuzzServerName(f *testing.F) {
	f.Add([]byte{1, 0, 0, 4, 3, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if s := ServerName(b); s != "" && !validName([]byte(s)) {
			t.Fatalf("%q", s)
		}
	})
}
