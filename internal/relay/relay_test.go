package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/loopback"
)

// plainConn hides the *net.TCPConn (and its splice) but keeps CloseWrite,
// like a tunnel stream.
type plainConn struct{ c *net.TCPConn }

func (p plainConn) Read(b []byte) (int, error)  { return p.c.Read(b) }
func (p plainConn) Write(b []byte) (int, error) { return p.c.Write(b) }
func (p plainConn) Close() error                { return p.c.Close() }
func (p plainConn) CloseWrite() error           { return p.c.CloseWrite() }

// noHalfClose cannot half-close.
type noHalfClose struct{ net.Conn }

type result struct {
	aToB, bToA int64
	err        error
}

// relayed starts Conns between two loopback connections and returns the
// app's end (talking to a) and the target's end (talking to b).
func relayed(t *testing.T, wrap func(c *net.TCPConn) Conn, opts ...Option) (app, target *net.TCPConn, done <-chan result) {
	t.Helper()
	app, a := loopback.Pair(t)
	b, target := loopback.Pair(t)
	ch := make(chan result, 1)
	go func() {
		var r result
		r.aToB, r.bToA, r.err = Conns(wrap(a), wrap(b), opts...)
		ch <- r
	}()
	return app, target, ch
}

func wait(t *testing.T, done <-chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("Conns did not return")
		return result{}
	}
}

func TestHalfClose(t *testing.T) {
	wraps := map[string]func(*net.TCPConn) Conn{
		"tcp (splice)": func(c *net.TCPConn) Conn { return c },
		"stream":       func(c *net.TCPConn) Conn { return plainConn{c} },
	}
	sizes := []int{0, 1, 100_000, 3 << 20}
	for name, wrap := range wraps {
		for _, size := range sizes {
			for _, bufSize := range []int{0, 4096} {
				t.Run(fmt.Sprintf("%s/%d/buf%d", name, size, bufSize), func(t *testing.T) {
					var opts []Option
					if bufSize > 0 {
						opts = append(opts, BufferSize(bufSize))
					}
					app, target, done := relayed(t, wrap, opts...)
					app.SetDeadline(time.Now().Add(30 * time.Second))
					target.SetDeadline(time.Now().Add(30 * time.Second))
					// The target answers only once the app has finished sending:
					// the app's EOF must reach it while the way back stays open.
					go func() {
						n, _ := io.Copy(io.Discard, target)
						fmt.Fprintf(target, "got %d bytes", n)
						target.Close()
					}()
					go func() {
						app.Write(bytes.Repeat([]byte{'x'}, size))
						app.CloseWrite()
					}()
					reply, err := io.ReadAll(app)
					if err != nil {
						t.Fatal(err)
					}
					want := fmt.Sprintf("got %d bytes", size)
					if string(reply) != want {
						t.Fatalf("reply %q, want %q", reply, want)
					}
					r := wait(t, done)
					if r.err != nil || r.aToB != int64(size) || r.bToA != int64(len(want)) {
						t.Errorf("Conns = %d, %d, %v; want %d, %d, nil", r.aToB, r.bToA, r.err, size, len(want))
					}
				})
			}
		}
	}
}

// Without CloseWrite, the end of one direction closes both.
func TestNoHalfClose(t *testing.T) {
	app, appPeer := net.Pipe()
	target, targetPeer := net.Pipe()
	done := make(chan result, 1)
	go func() {
		var r result
		r.aToB, r.bToA, r.err = Conns(appPeer, targetPeer, Prefix([]byte("pre")))
		done <- r
	}()
	go func() {
		b := make([]byte, 8)
		n, _ := io.ReadFull(target, b)
		target.Write(b[:n])
		io.Copy(io.Discard, target)
	}()
	app.Write([]byte("12345"))
	b := make([]byte, 8)
	if _, err := io.ReadFull(app, b); err != nil || string(b) != "pre12345" {
		t.Fatalf("read %q, %v", b, err)
	}
	app.Close()
	r := wait(t, done)
	if r.aToB != 8 || r.bToA != 8 || r.err != nil {
		t.Errorf("Conns = %+v, want 8, 8, nil", r)
	}
	if _, err := target.Write([]byte("x")); err == nil {
		t.Error("the target's connection is still open")
	}
}

func TestNoHalfCloseTCP(t *testing.T) {
	app, target, done := relayed(t, func(c *net.TCPConn) Conn { return noHalfClose{c} })
	app.Write([]byte("bye"))
	app.CloseWrite()
	// The relay cannot pass the half-close on: it closes the target's
	// connection after the bytes.
	got, err := io.ReadAll(target)
	if err != nil || string(got) != "bye" {
		t.Fatalf("target read %q, %v", got, err)
	}
	r := wait(t, done)
	if r.aToB != 3 || r.err != nil {
		t.Errorf("Conns = %+v", r)
	}
}

// A reset is a real error: it is returned and both sides are closed.
func TestError(t *testing.T) {
	app, target, done := relayed(t, func(c *net.TCPConn) Conn { return plainConn{c} })
	app.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(target, buf); err != nil {
		t.Fatal(err)
	}
	target.SetLinger(0)
	target.Close() // RST
	r := wait(t, done)
	if r.err == nil {
		t.Fatal("no error after a reset")
	}
	app.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := app.Read(buf); err == nil {
		t.Error("the app's connection is still open")
	}
}

// tap records what it sees and lets the copier skip after the first skipAfter
// bytes.
type tap struct {
	mu        sync.Mutex
	seen      bytes.Buffer
	skipped   int64
	skipAfter int
}

func (p *tap) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen.Write(b)
}

func (p *tap) Skip() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.skipAfter >= 0 && p.seen.Len() >= p.skipAfter {
		return math.MaxInt64
	}
	return 0
}

func (p *tap) Skipped(n int64) {
	p.mu.Lock()
	p.skipped += n
	p.mu.Unlock()
}

func TestTapsAndPrefix(t *testing.T) {
	wraps := map[string]func(*net.TCPConn) Conn{
		"tcp":    func(c *net.TCPConn) Conn { return c },
		"stream": func(c *net.TCPConn) Conn { return plainConn{c} },
	}
	for name, wrap := range wraps {
		for _, skipAfter := range []int{-1, 10} {
			t.Run(fmt.Sprintf("%s/skip%d", name, skipAfter), func(t *testing.T) {
				ab, ba := &tap{skipAfter: skipAfter}, &tap{skipAfter: -1}
				app, target, done := relayed(t, wrap, Prefix([]byte("GET / ")), Taps(ab, ba))
				body := bytes.Repeat([]byte{'b'}, 200_000)
				go func() {
					app.Write([]byte("HTTP/1.1\r\n\r\n"))
					app.Write(body)
					app.CloseWrite()
				}()
				got, err := io.ReadAll(target)
				if err != nil {
					t.Fatal(err)
				}
				want := "GET / HTTP/1.1\r\n\r\n" + string(body)
				if string(got) != want {
					t.Fatalf("target got %d bytes, want %d", len(got), len(want))
				}
				target.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
				target.Close()
				io.ReadAll(app)
				r := wait(t, done)
				if r.aToB != int64(len(want)) || r.bToA != 19 || r.err != nil {
					t.Errorf("Conns = %+v", r)
				}
				if int64(ab.seen.Len())+ab.skipped != int64(len(want)) || !bytes.HasPrefix(ab.seen.Bytes(), []byte("GET / ")) {
					t.Errorf("a→b tap saw %d and skipped %d bytes of %d", ab.seen.Len(), ab.skipped, len(want))
				}
				if skipAfter < 0 && ab.skipped != 0 {
					t.Errorf("skipped %d bytes the tap wanted", ab.skipped)
				}
				if ba.seen.String() != "HTTP/1.1 200 OK\r\n\r\n" {
					t.Errorf("b→a tap saw %q", ba.seen.String())
				}
			})
		}
	}
}

// Closing one side from outside (a server shutting down) ends the relay.
func TestCloseFromOutside(t *testing.T) {
	app, a := loopback.Pair(t)
	b, _ := loopback.Pair(t)
	done := make(chan result, 1)
	go func() {
		var r result
		r.aToB, r.bToA, r.err = Conns(a, b)
		done <- r
	}()
	app.Write([]byte("x"))
	time.Sleep(10 * time.Millisecond)
	a.Close()
	wait(t, done)
}

func TestCloseWrite(t *testing.T) {
	c, s := loopback.Pair(t)
	if err := CloseWrite(c); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("peer read err %v, want EOF", err)
	}
	if _, err := s.Write([]byte("still open")); err != nil {
		t.Errorf("the other direction: %v", err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := CloseWrite(a); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("net.Pipe: err %v, want ErrUnsupported", err)
	}
}
