// Package mux carries many byte streams over one connection, each with its
// own flow-control window: the data path to Tether's Kubernetes agent pod,
// where one port-forward stream through the API server carries the app's
// connections. SSH channels do the same, but x/crypto/ssh fixes their window
// at 2 MiB, which limits one connection to 2 MiB per round trip of the API
// server path; here the receiver chooses the window (default 16 MiB).
//
// Only the client opens streams; the server answers each open with Accept
// or Refuse. Streams half-close (CloseWrite sends EOF) like TCP.
//
// Wire format: frames of a 9-byte header (type, stream id, payload length;
// big endian) and the payload.
package mux

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Frame types.
const (
	frameOpen   = 1 // client: u32 receive window, then the request
	frameReply  = 2 // server: u8 ok, u32 receive window, then reply data (or the refusal message)
	frameData   = 3
	frameWindow = 4 // u32 more bytes the sender may send
	frameFin    = 5 // the sender sends no more data (half-close)
	frameReset  = 6 // the stream is aborted both ways
	framePing   = 7 // answered by framePong with the same payload
	framePong   = 8
)

const (
	headerSize = 9
	// MaxFrame is the largest data payload sent in one frame: a full frame
	// is 64 KiB with its header. The port-forward relays (the container
	// runtime, the kubelet) read in 32 KiB pieces, so frames of 64 KiB
	// reach them as two full reads; 64 KiB payloads left a 9-byte read,
	// and an SPDY frame, TLS record and syscalls for it at every hop.
	MaxFrame = 64<<10 - headerSize
	// maxRecv is the largest payload accepted (peers before MaxFrame
	// shrank sent 64 KiB).
	maxRecv = 64 << 10
	// maxControl bounds the payload of non-data frames (open requests,
	// replies).
	maxControl = 64 << 10
	// DefaultWindow is the receive window of a stream.
	DefaultWindow = 16 << 20
)

// ErrReset is returned by reads and writes of a stream the peer aborted.
var ErrReset = errors.New("mux: stream reset by the peer")

// ErrClosed is returned by calls on a closed stream or session.
var ErrClosed = errors.New("mux: closed")

// ErrTimeout is the session's error when the peer stopped answering.
var ErrTimeout = errors.New("mux: the peer stopped answering")

// RefusedError is returned by Open when the server refused the stream.
type RefusedError struct{ Message []byte }

func (e *RefusedError) Error() string { return "mux: refused: " + string(e.Message) }

// Config tunes a session; the zero value is usable.
type Config struct {
	// Window is the receive window of each stream (bytes the peer may send
	// before we read them); default DefaultWindow.
	Window int
	// KeepaliveInterval: a client sends a ping after this long without a
	// frame from the server; default 10s, negative = never.
	KeepaliveInterval time.Duration
	// Timeout: the session fails with ErrTimeout when nothing arrived for
	// this long; default 30s (client) / 60s (server); negative = never.
	Timeout time.Duration
}

// Session is one multiplexed connection.
type Session struct {
	conn   io.ReadWriteCloser
	br     *bufio.Reader
	client bool
	window uint32
	accept func(*Stream, []byte)

	wmu  sync.Mutex
	wbuf []byte
	werr error

	mu      sync.Mutex
	streams map[uint32]*Stream
	nextID  uint32
	err     error // why the session ended
	done    chan struct{}
	wg      sync.WaitGroup

	lastRecv atomic.Int64 // unix nanoseconds
}

// Client starts the client side of a session on conn; the session owns conn.
func Client(conn io.ReadWriteCloser, cfg Config) *Session {
	return start(conn, cfg, true, nil)
}

// Server starts the server side of a session on conn; accept is called in a
// new goroutine for every stream the client opens, with the client's
// request, and must call Accept or Refuse. The session owns conn.
func Server(conn io.ReadWriteCloser, cfg Config, accept func(st *Stream, request []byte)) *Session {
	return start(conn, cfg, false, accept)
}

func start(conn io.ReadWriteCloser, cfg Config, client bool, accept func(*Stream, []byte)) *Session {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.KeepaliveInterval == 0 {
		cfg.KeepaliveInterval = 10 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
		if !client {
			cfg.Timeout = 60 * time.Second
		}
	}
	s := &Session{
		conn: conn, br: bufio.NewReaderSize(conn, 128<<10), client: client,
		window: uint32(min(cfg.Window, 1<<30)), accept: accept,
		streams: map[uint32]*Stream{}, nextID: 1, done: make(chan struct{}),
	}
	s.lastRecv.Store(time.Now().UnixNano())
	s.wg.Go(s.readLoop)
	if cfg.Timeout > 0 || (client && cfg.KeepaliveInterval > 0) {
		s.wg.Go(func() { s.keepalive(cfg.KeepaliveInterval, cfg.Timeout) })
	}
	return s
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the session ended (nil while it runs).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// NumStreams is the number of open streams.
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Close ends the session and every stream and waits for its goroutines.
func (s *Session) Close() error {
	s.fail(ErrClosed)
	s.wg.Wait()
	return nil
}

// fail ends the session with err (the first error wins).
func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	streams := s.streams
	s.streams = map[uint32]*Stream{}
	close(s.done)
	s.mu.Unlock()
	s.conn.Close()
	lost := err
	if !errors.Is(err, ErrClosed) {
		lost = fmt.Errorf("mux: connection lost: %w", err)
	}
	for _, st := range streams {
		st.abort(lost)
	}
}

func (s *Session) keepalive(interval, timeout time.Duration) {
	tick := interval
	if tick <= 0 || (timeout > 0 && timeout/3 < tick) {
		tick = max(timeout/3, 10*time.Millisecond)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		idle := time.Since(time.Unix(0, s.lastRecv.Load()))
		if timeout > 0 && idle > timeout {
			s.fail(ErrTimeout)
			return
		}
		if s.client && interval > 0 && idle >= interval {
			go s.writeFrame(framePing, 0, make([]byte, 8))
		}
	}
}

// writeFrame sends one frame; header and payload go in one Write.
func (s *Session) writeFrame(typ byte, id uint32, payload []byte, more ...[]byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.werr != nil {
		return s.werr
	}
	n := len(payload)
	for _, m := range more {
		n += len(m)
	}
	if s.wbuf == nil {
		s.wbuf = make([]byte, 0, headerSize+MaxFrame)
	}
	buf := s.wbuf[:0]
	buf = append(buf, typ, 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(buf[1:5], id)
	binary.BigEndian.PutUint32(buf[5:9], uint32(n))
	buf = append(buf, payload...)
	for _, m := range more {
		buf = append(buf, m...)
	}
	_, err := s.conn.Write(buf)
	if cap(buf) <= 2*(headerSize+MaxFrame) { // keep the frame-sized buffer
		s.wbuf = buf[:0]
	}
	if err != nil {
		s.werr = err
		go s.fail(err)
	}
	return err
}

func (s *Session) stream(id uint32) *Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[id]
}

func (s *Session) remove(st *Stream) {
	s.mu.Lock()
	if s.streams[st.id] == st {
		delete(s.streams, st.id)
	}
	s.mu.Unlock()
}

func (s *Session) readLoop() {
	var hdr [headerSize]byte
	for {
		if _, err := io.ReadFull(s.br, hdr[:]); err != nil {
			s.fail(err)
			return
		}
		s.lastRecv.Store(time.Now().UnixNano())
		typ, id, n := hdr[0], binary.BigEndian.Uint32(hdr[1:5]), int(binary.BigEndian.Uint32(hdr[5:9]))
		if n > maxControl || (typ == frameData && n > maxRecv) {
			s.fail(fmt.Errorf("mux: frame of %d bytes", n))
			return
		}
		if typ == frameData {
			st := s.stream(id)
			if st == nil { // closed here already: drop
				if _, err := s.br.Discard(n); err != nil {
					s.fail(err)
					return
				}
				continue
			}
			c := newChunk(n)
			if _, err := io.ReadFull(s.br, c.data); err != nil {
				c.free()
				s.fail(err)
				return
			}
			if err := st.push(c); err != nil {
				s.fail(err)
				return
			}
			continue
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(s.br, p); err != nil {
			s.fail(err)
			return
		}
		if err := s.control(typ, id, p); err != nil {
			s.fail(err)
			return
		}
	}
}

func (s *Session) control(typ byte, id uint32, p []byte) error {
	switch typ {
	case frameOpen:
		if s.client || len(p) < 4 {
			return errors.New("mux: unexpected open")
		}
		st := newStream(s, id)
		st.credit = int64(binary.BigEndian.Uint32(p))
		s.mu.Lock()
		if _, dup := s.streams[id]; dup || s.err != nil {
			s.mu.Unlock()
			return fmt.Errorf("mux: stream %d opened twice", id)
		}
		s.streams[id] = st
		s.mu.Unlock()
		req := p[4:]
		go s.accept(st, req)
	case frameReply:
		if !s.client || len(p) < 5 {
			return errors.New("mux: unexpected reply")
		}
		if st := s.stream(id); st != nil && st.reply != nil {
			st.mu.Lock()
			st.credit = int64(binary.BigEndian.Uint32(p[1:5]))
			st.mu.Unlock()
			select {
			case st.reply <- reply{ok: p[0] == 1, data: p[5:]}:
			default:
			}
		}
	case frameWindow:
		if len(p) != 4 {
			return errors.New("mux: bad window frame")
		}
		if st := s.stream(id); st != nil {
			st.mu.Lock()
			st.credit += int64(binary.BigEndian.Uint32(p))
			st.mu.Unlock()
			wake(st.wsig)
		}
	case frameFin:
		if st := s.stream(id); st != nil {
			st.mu.Lock()
			st.rfin = true
			st.mu.Unlock()
			wake(st.rsig)
		}
	case frameReset:
		if st := s.stream(id); st != nil {
			s.remove(st)
			st.abort(ErrReset)
		}
	case framePing:
		go s.writeFrame(framePong, 0, p)
	case framePong:
	default:
		return fmt.Errorf("mux: unknown frame type %d", typ)
	}
	return nil
}

// Open opens a stream with request and waits for the server's answer: the
// reply data, or a *RefusedError.
func (s *Session) Open(ctx context.Context, request []byte) (*Stream, []byte, error) {
	if len(request) > maxControl-4 {
		return nil, nil, errors.New("mux: request too long")
	}
	st := newStream(s, 0)
	st.reply = make(chan reply, 1)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return nil, nil, err
	}
	st.id = s.nextID
	s.nextID++
	s.streams[st.id] = st
	s.mu.Unlock()
	var w [4]byte
	binary.BigEndian.PutUint32(w[:], s.window)
	if err := s.writeFrame(frameOpen, st.id, w[:], request); err != nil {
		s.remove(st)
		return nil, nil, err
	}
	select {
	case r := <-st.reply:
		if !r.ok {
			s.remove(st)
			return nil, nil, &RefusedError{Message: r.data}
		}
		return st, r.data, nil
	case <-ctx.Done():
		st.Close()
		return nil, nil, ctx.Err()
	case <-s.done:
		return nil, nil, s.Err()
	}
}

type reply struct {
	ok   bool
	data []byte
}
