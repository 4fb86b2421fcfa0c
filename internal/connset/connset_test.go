package connset_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/connset"
	"github.com/tether-dev/tether/internal/loopback"
)

// conns returns n accepted loopback connections and their clients.
func conns(t *testing.T, n int) (server, client []net.Conn) {
	for range n {
		c, s := loopback.Pair(t)
		server, client = append(server, s), append(client, c)
	}
	return server, client
}

// closed reports whether the peer of client was closed (EOF on a read).
func closed(t *testing.T, client net.Conn) bool {
	t.Helper()
	client.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err := client.Read(make([]byte, 1))
	return err == io.EOF
}

func TestSet(t *testing.T) {
	tests := []struct {
		name       string
		add        int // connections added while open
		remove     int // of those, removed again
		wantLen    int
		wantClosed int // of the added ones, closed by CloseAll
	}{
		{"empty", 0, 0, 0, 0},
		{"some", 3, 0, 3, 3},
		{"removed are not closed", 3, 2, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s connset.Set
			server, client := conns(t, tt.add+1)
			for _, c := range server[:tt.add] {
				if !s.Add(c) {
					t.Fatal("Add refused on an open set")
				}
			}
			for _, c := range server[:tt.remove] {
				s.Remove(c)
			}
			if s.Len() != tt.wantLen {
				t.Fatalf("Len = %d, want %d", s.Len(), tt.wantLen)
			}
			s.CloseAll()
			if s.Len() != 0 {
				t.Errorf("Len after CloseAll = %d", s.Len())
			}
			n := 0
			for _, c := range client[:tt.add] {
				if closed(t, c) {
					n++
				}
			}
			if n != tt.wantClosed {
				t.Errorf("%d connections closed, want %d", n, tt.wantClosed)
			}
			// A connection added after CloseAll is closed, not leaked.
			late := server[tt.add]
			if s.Add(late) {
				t.Error("Add accepted on a closed set")
			}
			if !closed(t, client[tt.add]) {
				t.Error("a connection added after CloseAll is still open")
			}
			if s.Len() != 0 {
				t.Errorf("Len = %d after a refused Add", s.Len())
			}
			s.CloseAll() // again: no effect
		})
	}
}

// removeOnClose removes itself from its set when closed, as a connection
// that accounts for itself does.
type removeOnClose struct {
	net.Conn
	s *connset.Set
}

func (c removeOnClose) Close() error {
	c.s.Remove(c)
	return c.Conn.Close()
}

func TestCloseCallsRemove(t *testing.T) {
	var s connset.Set
	server, _ := conns(t, 2)
	for _, c := range server {
		s.Add(removeOnClose{c, &s})
	}
	done := make(chan struct{})
	go func() { s.CloseAll(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("CloseAll deadlocked on a Close that calls Remove")
	}
}

// Adds racing with CloseAll: every connection ends up closed, whichever
// side of CloseAll its Add fell on.
func TestAddRacesCloseAll(t *testing.T) {
	const n = 50
	for range 5 {
		var s connset.Set
		server, client := conns(t, n)
		var wg sync.WaitGroup
		for _, c := range server {
			wg.Go(func() { s.Add(c) })
		}
		s.CloseAll()
		wg.Wait()
		for i, c := range client {
			if !closed(t, c) {
				t.Fatalf("connection %d left open", i)
			}
		}
	}
}

func TestDrain(t *testing.T) {
	tests := []struct {
		name       string
		conns      int
		removeIn   time.Duration // the connections end by themselves after this; 0: never
		timeout    time.Duration
		wantClosed bool // Drain had to close them
	}{
		{"empty", 0, 0, time.Minute, false},
		{"they end", 3, 50 * time.Millisecond, time.Minute, false},
		{"they hang", 3, 0, 100 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s connset.Set
			server, client := conns(t, tt.conns+1)
			late, lateClient := server[tt.conns], client[tt.conns]
			server, client = server[:tt.conns], client[:tt.conns]
			for _, c := range server {
				s.Add(c)
			}
			if tt.removeIn > 0 {
				time.AfterFunc(tt.removeIn, func() {
					for _, c := range server {
						s.Remove(c)
					}
				})
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			t0 := time.Now()
			s.Drain(ctx)
			if d := time.Since(t0); d > 10*time.Second {
				t.Fatalf("Drain took %s", d)
			}
			for _, c := range client {
				if got := closed(t, c); got != tt.wantClosed {
					t.Errorf("closed = %v, want %v", got, tt.wantClosed)
				}
			}
			// Drained is closed.
			if s.Add(late) || !closed(t, lateClient) {
				t.Error("a connection added after Drain was kept")
			}
		})
	}
}
