package agent

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// pipeBufSize bounds the bytes buffered in each direction of a memPipe.
const pipeBufSize = 64 << 10

var errBrokenPipe = errors.New("broken pipe")

// memPipe returns the two ends of an in-memory, full-duplex connection. Unlike
// net.Pipe, writes are buffered (up to 64 KiB each way) and each end can
// half-close with CloseWrite, so it behaves like a TCP connection for the
// forwarding code. Deadlines are supported.
func memPipe(aAddr, bAddr net.Addr) (a, b *pipeConn) {
	ab, ba := newPipeBuf(), newPipeBuf()
	a = &pipeConn{rx: ba, tx: ab, local: aAddr, remote: bAddr, rdl: newDeadline(), wdl: newDeadline()}
	b = &pipeConn{rx: ab, tx: ba, local: bAddr, remote: aAddr, rdl: newDeadline(), wdl: newDeadline()}
	return a, b
}

// pipeBuf is one direction of a memPipe.
type pipeBuf struct {
	mu      sync.Mutex
	buf     []byte
	eof     bool          // the writer closed: reads drain buf then return io.EOF
	rclosed bool          // the reader closed: writes fail
	changed chan struct{} // closed and replaced on every state change
}

func newPipeBuf() *pipeBuf { return &pipeBuf{changed: make(chan struct{})} }

func (p *pipeBuf) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *pipeBuf) read(b []byte, dl *deadline) (int, error) {
	for {
		p.mu.Lock()
		if p.rclosed {
			p.mu.Unlock()
			return 0, net.ErrClosed
		}
		if len(b) == 0 {
			p.mu.Unlock()
			return 0, nil
		}
		if len(p.buf) > 0 {
			n := copy(b, p.buf)
			p.buf = p.buf[n:]
			if len(p.buf) == 0 {
				p.buf = nil
			}
			p.notifyLocked()
			p.mu.Unlock()
			return n, nil
		}
		if p.eof {
			p.mu.Unlock()
			return 0, io.EOF
		}
		wait := p.changed
		p.mu.Unlock()
		select {
		case <-wait:
		case <-dl.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (p *pipeBuf) write(b []byte, dl *deadline) (int, error) {
	written := 0
	for {
		p.mu.Lock()
		switch {
		case p.eof:
			p.mu.Unlock()
			return written, net.ErrClosed
		case p.rclosed:
			p.mu.Unlock()
			return written, errBrokenPipe
		}
		if free := pipeBufSize - len(p.buf); free > 0 {
			n := min(free, len(b)-written)
			p.buf = append(p.buf, b[written:written+n]...)
			written += n
			p.notifyLocked()
		}
		if written == len(b) {
			p.mu.Unlock()
			return written, nil
		}
		wait := p.changed
		p.mu.Unlock()
		select {
		case <-wait:
		case <-dl.wait():
			return written, os.ErrDeadlineExceeded
		}
	}
}

func (p *pipeBuf) closeWrite() {
	p.mu.Lock()
	if !p.eof {
		p.eof = true
		p.notifyLocked()
	}
	p.mu.Unlock()
}

func (p *pipeBuf) closeRead() {
	p.mu.Lock()
	if !p.rclosed {
		p.rclosed = true
		p.buf = nil
		p.notifyLocked()
	}
	p.mu.Unlock()
}

// pipeConn is one end of a memPipe.
type pipeConn struct {
	rx, tx        *pipeBuf
	local, remote net.Addr
	rdl, wdl      *deadline
}

func (c *pipeConn) Read(b []byte) (int, error)  { return c.rx.read(b, c.rdl) }
func (c *pipeConn) Write(b []byte) (int, error) { return c.tx.write(b, c.wdl) }
func (c *pipeConn) LocalAddr() net.Addr         { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr        { return c.remote }

// CloseWrite sends EOF to the other end; reading continues.
func (c *pipeConn) CloseWrite() error {
	c.tx.closeWrite()
	return nil
}

// Close closes both directions.
func (c *pipeConn) Close() error {
	c.tx.closeWrite()
	c.rx.closeRead()
	return nil
}

func (c *pipeConn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}
func (c *pipeConn) SetReadDeadline(t time.Time) error  { c.rdl.set(t); return nil }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

// deadline is a settable deadline whose wait channel is closed when it
// passes (the same design as net.Pipe's).
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed when the deadline passes
}

func newDeadline() *deadline { return &deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired and closed cancel
	}
	d.timer = nil
	closed := false
	select {
	case <-d.cancel:
		closed = true
	default:
	}
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}
