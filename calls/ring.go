package calls

import "sync"

// Ring keeps the last calls, up to a fixed number: memory stays bounded
// however many calls a session makes.
type Ring struct {
	mu      sync.Mutex
	buf     []Call
	next    int   // where the next call goes
	full    bool  // buf has wrapped
	dropped int64 // calls overwritten
}

// NewRing returns a ring of capacity calls (at least 1).
func NewRing(capacity int) *Ring { return &Ring{buf: make([]Call, max(capacity, 1))} }

// Add stores a call, overwriting the oldest when full.
func (r *Ring) Add(c Call) {
	r.mu.Lock()
	if r.full {
		r.dropped++
	}
	r.buf[r.next] = c
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Last returns up to limit of the newest calls for which keep is true (nil
// keeps all), oldest first; limit <= 0 means all. Dropped is how many
// calls (of any session) the ring has overwritten so far.
func (r *Ring) Last(limit int, keep func(*Call) bool) (out []Call, dropped int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	for i := 0; i < n && (limit <= 0 || len(out) < limit); i++ {
		j := (r.next - 1 - i + len(r.buf)) % len(r.buf)
		if keep == nil || keep(&r.buf[j]) {
			out = append(out, r.buf[j])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, r.dropped
}
