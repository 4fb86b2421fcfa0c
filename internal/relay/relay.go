// Package relay carries bytes between two connections both ways and passes
// a half-close on, as TCP would: the one copy loop that every proxy path of
// Tether (channel, forwards, the agent, the sidecar) runs once connected.
package relay

import (
	"errors"
	"io"
	"math"
	"net"
	"sync"
)

// Conn is one end of a relay: a net.Conn, an SSH channel, a mux stream.
// If it has a CloseWrite() error method, the end of the other direction is
// passed on to it as a half-close.
type Conn interface {
	io.Reader
	io.Writer
	io.Closer
}

// Tap sees the bytes of one direction on their way (calls.Side is one).
type Tap interface {
	// Write is given every byte before it is written on, except those
	// that Skip lets the copier move without looking.
	Write(p []byte) (int, error)
	// Skip says how many of the next bytes the tap does not need to see;
	// math.MaxInt64 once it needs none.
	Skip() int64
	// Skipped accounts for n bytes moved without Write, at most Skip().
	Skipped(n int64)
}

// An Option changes how Conns copies.
type Option func(*options)

type options struct {
	prefix       []byte
	tapAB, tapBA Tap
	bufSize      int
}

// Prefix sends pre, bytes already read from a (by a handshake reader, say),
// to b before anything else; they count in aToB.
func Prefix(pre []byte) Option { return func(o *options) { o.prefix = pre } }

// Taps shows the bytes from a to b to ab and those from b to a to ba;
// either may be nil.
func Taps(ab, ba Tap) Option { return func(o *options) { o.tapAB, o.tapBA = ab, ba } }

// BufferSize copies through buffers of n bytes, instead of starting at
// 32 KiB and growing to 256 KiB for a bulk transfer: for a process whose
// memory is tight.
func BufferSize(n int) Option { return func(o *options) { o.bufSize = n } }

// Conns copies from a to b and from b to a until both directions have
// ended, then closes both. When a direction ends with EOF, the side it
// wrote to is half-closed (CloseWrite) and the other direction goes on; if
// that side cannot half-close, or a direction fails, both are closed, which
// ends the other direction too. It returns the bytes copied each way and
// the first error that was not caused by its own closing (nil when both
// directions ended with EOF).
func Conns(a, b Conn, opts ...Option) (aToB, bToA int64, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	r := &relay{a: a, b: b}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		if len(o.prefix) > 0 {
			if o.tapAB != nil {
				o.tapAB.Write(o.prefix)
			}
			var n int
			n, err = b.Write(o.prefix)
			aToB = int64(n)
		}
		if err == nil {
			var n int64
			n, err = copyDir(b, a, o.tapAB, o.bufSize)
			aToB += n
		}
		r.end(b, err)
	}()
	bToA, err = copyDir(a, b, o.tapBA, o.bufSize)
	r.end(a, err)
	<-done
	a.Close()
	b.Close()
	return aToB, bToA, r.err
}

type relay struct {
	a, b   Conn
	mu     sync.Mutex
	closed bool  // closeBoth ran: later errors are its doing
	err    error // the first error
}

// CloseWrite half-closes c (sends EOF to its peer, reading goes on) if it
// has a CloseWrite method, else fails with errors.ErrUnsupported.
func CloseWrite(c any) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// end is called when copying to dst has stopped with err (nil: EOF).
func (r *relay) end(dst Conn, err error) {
	if err == nil && CloseWrite(dst) == nil {
		return
	}
	r.mu.Lock()
	if err != nil && r.err == nil && !r.closed {
		r.err = err
	}
	r.closed = true
	r.mu.Unlock()
	r.a.Close()
	r.b.Close()
}

// Buffer sizes of the generic copy (one side is not a TCP socket, e.g. a
// tunnel stream). A direction whose read fills the small buffer (a bulk
// transfer: more is waiting) moves to a bulk one, so that each read takes
// several SSH packets at once: fewer write(2) calls and fewer SSH window
// adjustments per byte. Idle and interactive connections, the common case
// with thousands of them, keep the small one.
const (
	smallBuf = 32 << 10
	bulkBuf  = 256 << 10
)

// spliceMin is the smallest body that a tapped copy between two TCP
// sockets hands to the kernel (splice(2)) instead of reading it.
const spliceMin = 64 << 10

var pools sync.Map // buffer size -> *sync.Pool of *[]byte

func pool(size int) *sync.Pool {
	if p, ok := pools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := pools.LoadOrStore(size, &sync.Pool{New: func() any { b := make([]byte, size); return &b }})
	return p.(*sync.Pool)
}

// copyDir copies src to dst until EOF (nil) or an error. Between two TCP
// sockets io.Copy lets the kernel splice; otherwise it copies through
// pooled buffers, of size bufSize if it is not 0.
func copyDir(dst, src Conn, tap Tap, bufSize int) (int64, error) {
	if _, ok := dst.(*net.TCPConn); ok {
		if _, ok := src.(*net.TCPConn); ok {
			if tap == nil {
				return io.Copy(dst, src)
			}
			return copyTCPTapped(dst, src, tap)
		}
	}
	size, grow := bufSize, false
	if size <= 0 {
		size, grow = smallBuf, true
	}
	p := pool(size)
	bp := p.Get().(*[]byte)
	defer func() { p.Put(bp) }()
	buf := *bp
	var written int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			if tap != nil {
				tap.Write(buf[:nr])
			}
			nw, werr := dst.Write(buf[:nr])
			if nw < 0 || nr < nw {
				nw = 0
				if werr == nil {
					werr = errors.New("invalid write result")
				}
			}
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
			if nr != nw {
				return written, io.ErrShortWrite
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return written, nil
			}
			return written, rerr
		}
		if grow && nr == len(buf) {
			grow = false
			p.Put(bp)
			p = pool(bulkBuf)
			bp = p.Get().(*[]byte)
			buf = *bp
		}
	}
}

// copyTCPTapped copies between two TCP sockets through a small buffer
// while tap reads, and lets the kernel splice what it skips and everything
// once it has stopped reading.
func copyTCPTapped(dst, src Conn, tap Tap) (int64, error) {
	var written int64
	p := pool(smallBuf)
	var bp *[]byte
	defer func() {
		if bp != nil {
			p.Put(bp)
		}
	}()
	for {
		if skip := tap.Skip(); skip >= spliceMin {
			r := io.Reader(src)
			if skip != math.MaxInt64 {
				r = io.LimitReader(src, skip)
			}
			n, err := io.Copy(dst, r)
			written += n
			tap.Skipped(n)
			if err != nil || n < skip {
				return written, err // EOF (nil) or an error
			}
			continue
		}
		if bp == nil {
			bp = p.Get().(*[]byte)
		}
		nr, rerr := src.Read(*bp)
		if nr > 0 {
			tap.Write((*bp)[:nr])
			nw, werr := dst.Write((*bp)[:nr])
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return written, nil
			}
			return written, rerr
		}
	}
}
