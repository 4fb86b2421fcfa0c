// Package connset holds the live connections of a server, so that closing
// the server ends them all and none slips in afterwards.
package connset

import (
	"context"
	"net"
	"sync"
)

// Set is a set of live connections. The zero value is an empty, open set.
type Set struct {
	mu     sync.Mutex
	closed bool
	m      map[net.Conn]struct{}
	empty  chan struct{} // closed when the set becomes empty (Drain waits)
}

// Add registers c. Once the set is closed, it closes c and returns false.
func (s *Set) Add(c net.Conn) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return false
	}
	if s.m == nil {
		s.m = map[net.Conn]struct{}{}
	}
	s.m[c] = struct{}{}
	s.mu.Unlock()
	return true
}

// Remove forgets c (it does not close it).
func (s *Set) Remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	if len(s.m) == 0 && s.empty != nil {
		close(s.empty)
		s.empty = nil
	}
	s.mu.Unlock()
}

// Drain waits until every connection in the set has been removed or ctx
// is done, then closes the rest (CloseAll): a graceful stop.
func (s *Set) Drain(ctx context.Context) {
	s.mu.Lock()
	var empty chan struct{}
	if len(s.m) > 0 {
		if s.empty == nil {
			s.empty = make(chan struct{})
		}
		empty = s.empty
	}
	s.mu.Unlock()
	if empty != nil {
		select {
		case <-empty:
		case <-ctx.Done():
		}
	}
	s.CloseAll()
}

// CloseAll closes every connection in the set and refuses new ones. The
// connections are closed outside the set's lock, so a Close that calls
// Remove is fine. It may be called more than once.
func (s *Set) CloseAll() {
	s.mu.Lock()
	s.closed = true
	m := s.m
	s.m = nil
	s.mu.Unlock()
	for c := range m {
		c.Close()
	}
}

// Len is the number of connections in the set.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
