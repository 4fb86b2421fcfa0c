// Package loopback gives tests real TCP connections on 127.0.0.1: a
// connected pair, and a server that runs a handler per connection. The
// test's cleanup closes them.
package loopback

import (
	"net"
	"sync"
	"testing"

	"github.com/tether-dev/tether/internal/connset"
)

// Pair returns both ends of a loopback TCP connection.
func Pair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// Serve accepts connections on 127.0.0.1 and runs handle on each in its
// own goroutine, then closes the connection; it returns the address. The
// test's cleanup stops listening, closes the open connections and waits
// for the handlers.
func Serve(t testing.TB, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns connset.Set
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		conns.CloseAll()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil || !conns.Add(c) {
				return
			}
			wg.Go(func() {
				defer conns.Remove(c)
				defer c.Close()
				handle(c)
			})
		}
	})
	return ln.Addr().String()
}

// ClosedPort returns a loopback port that nothing listens on (it was just
// free): dials to it are refused.
func ClosedPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}
