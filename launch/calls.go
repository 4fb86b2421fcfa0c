package launch

import (
	"io"
	"sync"
	"time"

	"github.com/tether-dev/tether/calls"
	"github.com/tether-dev/tether/protocol"
)

// Calls: every session's HTTP calls (read on the channel, the Java agent's
// forwards and the exposed ports) go to the manager's callLog: a bounded
// ring for interconnect/calls and HAR export, and a bounded queue that one
// goroutine drains into Hooks.OnCall, so that a slow client never holds up
// the copying goroutines (calls beyond the queue are not notified, but kept).

// Sizes of the call log.
const (
	callRingSize  = 4096
	callQueueSize = 1024
)

type callLog struct {
	ring   *calls.Ring
	onCall func(protocol.CallRecord)

	mu      sync.Mutex
	idle    sync.Cond       // signalled when queued reaches 0
	queued  int             // calls in the queue or being notified
	queue   chan calls.Call // nil without onCall
	closed  bool
	stopped chan struct{}
}

func newCallLog(onCall func(protocol.CallRecord)) *callLog {
	l := &callLog{ring: calls.NewRing(callRingSize), onCall: onCall}
	l.idle.L = &l.mu
	if onCall != nil {
		l.queue = make(chan calls.Call, callQueueSize)
		l.stopped = make(chan struct{})
		go func() {
			defer close(l.stopped)
			for c := range l.queue {
				onCall(CallRecord(&c, false))
				l.mu.Lock()
				if l.queued--; l.queued == 0 {
					l.idle.Broadcast()
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// add keeps a call; it never blocks.
func (l *callLog) add(c calls.Call) {
	l.ring.Add(c)
	if l.queue == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	select {
	case l.queue <- c:
		l.queued++
	default: // the client is not keeping up: it can still query the ring
	}
}

// flush waits until the queued calls are notified.
func (l *callLog) flush() {
	l.mu.Lock()
	for l.queued > 0 {
		l.idle.Wait()
	}
	l.mu.Unlock()
}

// FlushCalls waits until Hooks.OnCall has seen every call read so far (e.g.
// before printing a summary after a launch ended).
func (m *Manager) FlushCalls() { m.calls.flush() }

// close stops the notifications once the queued ones are sent.
func (l *callLog) close() {
	if l.queue == nil {
		return
	}
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.queue)
	}
	l.mu.Unlock()
	<-l.stopped
}

// sink returns the function sessions hand to the channel, the Java agent
// and the exposer: it labels calls with the session id.
func (l *callLog) sink(session string) func(calls.Call) {
	return func(c calls.Call) {
		c.Session = session
		l.add(c)
	}
}

func (l *callLog) last(session string, limit int) ([]calls.Call, int64) {
	var keep func(*calls.Call) bool
	if session != "" {
		keep = func(c *calls.Call) bool { return c.Session == session }
	}
	return l.ring.Last(limit, keep)
}

// Calls returns the newest kept calls of a session ("" for all), oldest
// first, and how many older ones were dropped from the ring.
func (m *Manager) Calls(session string, limit int, headers bool) protocol.InterconnectCallsResult {
	cs, dropped := m.calls.last(session, limit)
	out := protocol.InterconnectCallsResult{Calls: make([]protocol.CallRecord, 0, len(cs)), Dropped: dropped}
	for i := range cs {
		out.Calls = append(out.Calls, CallRecord(&cs[i], headers))
	}
	return out
}

// WriteHAR writes the kept calls of a session ("" for all) as HAR 1.2.
func (m *Manager) WriteHAR(w io.Writer, session, version string) error {
	cs, _ := m.calls.last(session, 0)
	return calls.WriteHAR(w, cs, version)
}

// CallRecord is the wire form of a call.
func CallRecord(c *calls.Call, headers bool) protocol.CallRecord {
	r := protocol.CallRecord{SessionID: c.Session, Conn: c.Conn, Direction: protocol.DirectionOutbound, Via: c.Via,
		Start: c.Start.UTC().Format(time.RFC3339Nano), Method: c.Method, URL: c.URL(), Host: c.Host, Path: c.Path,
		Status: c.Status, TTFBMs: msOf(c.TTFB), DurationMs: msOf(c.Duration), Sent: c.Sent, Received: c.Received,
		TraceID: c.TraceID, TLS: c.TLS, SNI: c.SNI, Target: c.Target, OpenedBy: c.Opener, Error: c.Err}
	if c.Inbound {
		r.Direction = protocol.DirectionInbound
	}
	if headers {
		r.RequestHeaders = wireHeaders(c.RequestHeaders)
		r.ResponseHeaders = wireHeaders(c.ResponseHeaders)
	}
	return r
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func wireHeaders(hs []calls.Header) []protocol.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]protocol.Header, len(hs))
	for i, h := range hs {
		out[i] = protocol.Header{Name: h.Name, Value: h.Value}
	}
	return out
}
