package mux

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Stream is one multiplexed connection: a net.Conn with CloseWrite.
type Stream struct {
	s     *Session
	id    uint32
	reply chan reply // client: the server's answer to the open

	wmu sync.Mutex // one writer at a time

	mu       sync.Mutex
	rbuf     []chunk // received, unread
	rlen     int
	unacked  int // read but not yet returned to the peer as window
	rfin     bool
	err      error // reset or session failure
	credit   int64 // bytes we may still send
	wfin     bool  // we sent FIN
	closed   bool  // Close was called
	answered bool  // server: Accept or Refuse was called
	rdl, wdl time.Time
	rsig     chan struct{} // wakes a reader (capacity 1)
	wsig     chan struct{} // wakes a writer (capacity 1)
}

var _ net.Conn = (*Stream)(nil)

func newStream(s *Session, id uint32) *Stream {
	return &Stream{s: s, id: id, rsig: make(chan struct{}, 1), wsig: make(chan struct{}, 1)}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// signal wakes a waiting reader and writer.
func (st *Stream) signal() {
	wake(st.rsig)
	wake(st.wsig)
}

// wait blocks until sig fires (the stream's state may have changed) or the
// deadline passes (false). Called without st.mu.
func wait(sig chan struct{}, deadline time.Time) bool {
	if deadline.IsZero() {
		<-sig
		return true
	}
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-sig:
		return true
	case <-t.C:
		return false
	}
}

// chunk is the payload of one data frame while it waits for Read; a large
// one (a bulk transfer's) in a pooled frame buffer, so that bulk allocates
// nothing per frame. Small ones get their own size: the window counts
// bytes, and a window of small frames in frame-sized buffers would hold
// many times the window's memory.
type chunk struct {
	buf  *[]byte // from framePool; nil for a payload that was allocated
	data []byte  // the unread part
}

var framePool = sync.Pool{New: func() any { b := make([]byte, MaxFrame); return &b }}

func newChunk(n int) chunk {
	if n < MaxFrame/2 || n > MaxFrame {
		return chunk{data: make([]byte, n)}
	}
	b := framePool.Get().(*[]byte)
	return chunk{buf: b, data: (*b)[:n]}
}

// free returns the chunk's buffer to the pool.
func (c *chunk) free() {
	if c.buf != nil {
		framePool.Put(c.buf)
		c.buf = nil
	}
	c.data = nil
}

func freeChunks(cs []chunk) {
	for i := range cs {
		cs[i].free()
	}
}

// push queues data received from the peer; the stream owns c from here.
func (st *Stream) push(c chunk) error {
	st.mu.Lock()
	if st.closed || st.err != nil {
		st.mu.Unlock()
		c.free()
		return nil
	}
	if st.rlen+len(c.data) > int(st.s.window) {
		st.mu.Unlock()
		c.free()
		return errWindow
	}
	st.rbuf = append(st.rbuf, c)
	st.rlen += len(c.data)
	st.mu.Unlock()
	wake(st.rsig)
	return nil
}

var errWindow = protocolError("mux: the peer sent more than the window")

type protocolError string

func (e protocolError) Error() string { return string(e) }

// abort ends the stream with err (reset by the peer or session failure).
func (st *Stream) abort(err error) {
	st.mu.Lock()
	if st.err == nil {
		st.err = err
	}
	st.mu.Unlock()
	if st.reply != nil {
		select {
		case st.reply <- reply{ok: false, data: []byte(err.Error())}:
		default:
		}
	}
	st.signal()
}

// Read reads data from the peer; io.EOF after the peer's CloseWrite.
func (st *Stream) Read(b []byte) (int, error) {
	for {
		st.mu.Lock()
		switch {
		case st.closed:
			st.mu.Unlock()
			return 0, net.ErrClosed
		case st.rlen > 0:
			if len(b) == 0 {
				st.mu.Unlock()
				return 0, nil
			}
			n := 0
			for n < len(b) && len(st.rbuf) > 0 {
				c := copy(b[n:], st.rbuf[0].data)
				n += c
				if c == len(st.rbuf[0].data) {
					st.rbuf[0].free()
					st.rbuf = st.rbuf[1:]
				} else {
					st.rbuf[0].data = st.rbuf[0].data[c:]
				}
			}
			st.rlen -= n
			st.unacked += n
			var inc int
			if st.unacked >= int(st.s.window)/4 && !st.rfin && st.err == nil {
				inc, st.unacked = st.unacked, 0
			}
			st.mu.Unlock()
			if inc > 0 {
				var w [4]byte
				binary.BigEndian.PutUint32(w[:], uint32(inc))
				st.s.writeFrame(frameWindow, st.id, w[:])
			}
			return n, nil
		case st.rfin:
			st.mu.Unlock()
			return 0, io.EOF
		case st.err != nil:
			err := st.err
			st.mu.Unlock()
			return 0, err
		}
		dl := st.rdl
		st.mu.Unlock()
		if !wait(st.rsig, dl) {
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// Write sends b, waiting for window as needed.
func (st *Stream) Write(b []byte) (int, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	written := 0
	for written < len(b) {
		st.mu.Lock()
		switch {
		case st.closed || st.wfin:
			st.mu.Unlock()
			return written, net.ErrClosed
		case st.err != nil:
			err := st.err
			st.mu.Unlock()
			return written, err
		case st.credit > 0:
			n := int(min(int64(len(b)-written), st.credit, MaxFrame))
			st.credit -= int64(n)
			st.mu.Unlock()
			if err := st.s.writeFrame(frameData, st.id, b[written:written+n]); err != nil {
				return written, err
			}
			written += n
			continue
		}
		dl := st.wdl
		st.mu.Unlock()
		if !wait(st.wsig, dl) {
			return written, os.ErrDeadlineExceeded
		}
	}
	return written, nil
}

// CloseWrite sends EOF to the peer; reading goes on.
func (st *Stream) CloseWrite() error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	if st.wfin || st.closed || st.err != nil {
		st.mu.Unlock()
		return nil
	}
	st.wfin = true
	st.mu.Unlock()
	st.signal()
	return st.s.writeFrame(frameFin, st.id, nil)
}

// Close closes both directions: a graceful EOF when the peer has finished
// sending, else a reset (the peer's unread data is dropped).
func (st *Stream) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	typ := byte(0)
	switch {
	case st.err != nil:
	case st.rfin && !st.wfin:
		typ = frameFin
	case !st.rfin || !st.wfin:
		typ = frameReset
	}
	st.wfin = true
	freeChunks(st.rbuf)
	st.rbuf, st.rlen = nil, 0
	st.mu.Unlock()
	st.signal()
	st.s.remove(st)
	if typ != 0 {
		st.s.writeFrame(typ, st.id, nil)
	}
	return nil
}

// Accept answers the client's open (server side) with reply data.
func (st *Stream) Accept(data []byte) error { return st.answer(true, data) }

// Refuse answers the client's open with a refusal message (server side)
// and closes the stream.
func (st *Stream) Refuse(message []byte) error {
	err := st.answer(false, message)
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	st.s.remove(st)
	return err
}

func (st *Stream) answer(ok bool, data []byte) error {
	st.mu.Lock()
	if st.answered {
		st.mu.Unlock()
		return ErrClosed
	}
	st.answered = true
	st.mu.Unlock()
	var h [5]byte
	if ok {
		h[0] = 1
		binary.BigEndian.PutUint32(h[1:], st.s.window)
	}
	if len(data) > maxControl-5 {
		data = data[:maxControl-5]
	}
	return st.s.writeFrame(frameReply, st.id, h[:], data)
}

type addr string

func (a addr) Network() string { return "mux" }
func (a addr) String() string  { return string(a) }

func (st *Stream) LocalAddr() net.Addr  { return addr("local") }
func (st *Stream) RemoteAddr() net.Addr { return addr("remote") }

func (st *Stream) SetDeadline(t time.Time) error {
	st.mu.Lock()
	st.rdl, st.wdl = t, t
	st.mu.Unlock()
	st.signal()
	return nil
}

func (st *Stream) SetReadDeadline(t time.Time) error {
	st.mu.Lock()
	st.rdl = t
	st.mu.Unlock()
	st.signal()
	return nil
}

func (st *Stream) SetWriteDeadline(t time.Time) error {
	st.mu.Lock()
	st.wdl = t
	st.mu.Unlock()
	st.signal()
	return nil
}
