package loopback

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestPair(t *testing.T) {
	c, s := Pair(t)
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(s); err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v", b, err)
	}
}

func TestServe(t *testing.T) {
	held := make(chan struct{})
	addr, outer := "", t
	t.Run("serve", func(t *testing.T) {
		addr = Serve(t, func(c net.Conn) {
			if _, err := io.Copy(c, c); err != nil {
				return
			}
			close(held) // reached only once the client has half-closed
			io.Copy(io.Discard, c)
		})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		outer.Cleanup(func() { c.Close() }) // after Serve's cleanup, which must end the handler
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("echo"))
		c.(*net.TCPConn).CloseWrite()
		if b, err := io.ReadAll(io.LimitReader(c, 4)); err != nil || string(b) != "echo" {
			t.Fatalf("read %q, %v", b, err)
		}
		<-held
		// The handler is still running: the cleanup must end it.
	})
	if _, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		t.Error("still listening after the cleanup")
	}
}
