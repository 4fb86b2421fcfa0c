package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// The sandbox's endpoints for trying the call log: /fail answers 500 with
// the caller's traceparent, /slow answers after ?ms=N.
func TestSandboxFailAndSlow(t *testing.T) {
	sb := NewSandbox()
	t.Cleanup(func() { sb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := sb.Dial(ctx, "tcp", "orders.sandbox.internal:80")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	io.WriteString(conn, "GET /fail HTTP/1.1\r\nHost: orders.sandbox.internal\r\ntraceparent: "+tp+"\r\n\r\n")
	status, body := readHTTP(t, br)
	var got map[string]string
	if status != "HTTP/1.1 500 Internal Server Error" || json.Unmarshal(body, &got) != nil || got["traceparent"] != tp {
		t.Fatalf("%q %s", status, body)
	}
	start := time.Now()
	io.WriteString(conn, "GET /slow?ms=300 HTTP/1.1\r\nHost: orders.sandbox.internal\r\n\r\n")
	if status, body := readHTTP(t, br); status != "HTTP/1.1 200 OK" || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("%q %s after %v", status, body, time.Since(start))
	}
	// A slow answer does not hold up Close.
	io.WriteString(conn, "GET /slow?ms=10000 HTTP/1.1\r\nHost: orders.sandbox.internal\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	start = time.Now()
	sb.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
}
