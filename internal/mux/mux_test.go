package mux

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// pair connects a client and a server session over loopback TCP; the
// server echoes every stream whose request is "echo", sends its request
// back as the reply data, and refuses the others.
func pair(t testing.TB, ccfg, scfg Config) (*Session, *Session) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-ch
	srv := Server(sc, scfg, func(st *Stream, req []byte) {
		if string(req) == "bulk" { // streams until the client closes
			st.Accept(nil)
			buf := make([]byte, 256<<10)
			for {
				if _, err := st.Write(buf); err != nil {
					return
				}
			}
		}
		if string(req) != "echo" {
			st.Refuse([]byte("no " + string(req)))
			return
		}
		st.Accept(req)
		io.Copy(st, st)
		st.CloseWrite()
		// Wait for the client's close before closing (graceful).
		io.Copy(io.Discard, st)
		st.Close()
	})
	cli := Client(cc, ccfg)
	t.Cleanup(func() {
		cli.Close()
		srv.Close()
	})
	return cli, srv
}

func open(t testing.TB, s *Session) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, rep, err := s.Open(ctx, []byte("echo"))
	if err != nil {
		t.Fatal(err)
	}
	if string(rep) != "echo" {
		t.Fatalf("reply %q", rep)
	}
	return st
}

func TestEchoHalfCloseAndWindow(t *testing.T) {
	// A small window forces many window updates.
	cli, _ := pair(t, Config{Window: 64 << 10}, Config{Window: 32 << 10})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			st := open(t, cli)
			data := make([]byte, 3<<20+17)
			rand.Read(data)
			go func() {
				st.Write(data)
				st.CloseWrite()
			}()
			got, err := io.ReadAll(st)
			if err != nil {
				t.Error(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("echo: got %d bytes, want %d (equal prefix: %v)", len(got), len(data), bytes.HasPrefix(data, got))
			}
			st.Close()
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for cli.NumStreams() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := cli.NumStreams(); n != 0 {
		t.Errorf("%d streams left", n)
	}
}

func TestRefuse(t *testing.T) {
	cli, _ := pair(t, Config{}, Config{})
	_, _, err := cli.Open(context.Background(), []byte("nope"))
	var re *RefusedError
	if !errors.As(err, &re) || string(re.Message) != "no nope" {
		t.Fatalf("err = %v", err)
	}
	open(t, cli).Close() // the session still works
}

func TestResetAndSessionLoss(t *testing.T) {
	cli, srv := pair(t, Config{}, Config{})
	st := open(t, cli)
	st.Write([]byte("x"))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(st, buf); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if _, err := st.Read(buf); err == nil {
		t.Fatal("read after the session died: no error")
	}
	select {
	case <-cli.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client session did not end")
	}
	if _, _, err := cli.Open(context.Background(), []byte("echo")); err == nil {
		t.Fatal("open on a dead session succeeded")
	}
}

func TestReadDeadline(t *testing.T) {
	cli, _ := pair(t, Config{}, Config{})
	st := open(t, cli)
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestClosedStreamPeerGetsReset(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, _ := ln.Accept()
		s := Server(c, Config{}, func(st *Stream, req []byte) {
			st.Accept(nil)
			_, err := io.Copy(io.Discard, st)
			got <- err
		})
		t.Cleanup(func() { s.Close() })
	}()
	c, _ := net.Dial("tcp", ln.Addr().String())
	cli := Client(c, Config{})
	defer cli.Close()
	st, _, err := cli.Open(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("abc"))
	st.Close()
	select {
	case err := <-got:
		if !errors.Is(err, ErrReset) {
			t.Fatalf("server read: %v, want ErrReset", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reset")
	}
}

func TestKeepaliveTimeout(t *testing.T) {
	// A server that never answers: the client gives up.
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b)
	cli := Client(a, Config{KeepaliveInterval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond})
	defer cli.Close()
	select {
	case <-cli.Done():
		if !errors.Is(cli.Err(), ErrTimeout) {
			t.Fatalf("err = %v", cli.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no timeout")
	}
}

func FuzzServerFrames(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 16, 'e', 'c', 'h', 'o'})
	f.Add([]byte{3, 0, 0, 0, 1, 0, 0, 0, 1, 'x', 6, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		s := Server(a, Config{}, func(st *Stream, req []byte) {
			st.Accept(nil)
			io.Copy(io.Discard, st)
			st.Close()
		})
		go io.Copy(io.Discard, b)
		b.Write(in)
		b.Close()
		<-s.Done()
		s.Close()
	})
}

// BenchmarkDownload: one stream's bulk transfer server -> client over
// loopback TCP (the mux's own cost per byte; allocations per frame).
func BenchmarkDownload(b *testing.B) {
	cli, _ := pair(b, Config{}, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, _, err := cli.Open(ctx, []byte("bulk"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	buf := make([]byte, MaxFrame)
	b.SetBytes(MaxFrame)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := io.ReadFull(st, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAcceptsFullSizeFramesOfOlderPeers: peers built before MaxFrame
// shrank to fit the header send 64 KiB payloads; they are still accepted.
func TestAcceptsFullSizeFramesOfOlderPeers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var hdr [headerSize]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != frameOpen {
			return
		}
		io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[5:9])))
		frame := func(typ byte, payload []byte) []byte {
			f := []byte{typ, 0, 0, 0, 1, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(f[5:9], uint32(len(payload)))
			return append(f, payload...)
		}
		c.Write(frame(frameReply, []byte{1, 0, 1, 0, 0}))
		c.Write(frame(frameData, bytes.Repeat([]byte{7}, 64<<10)))
		io.Copy(io.Discard, c)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cli := Client(conn, Config{})
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, _, err := cli.Open(ctx, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 64<<10)
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(st, got); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{7}, 64<<10)) {
		t.Fatalf("read %v", err)
	}
}
