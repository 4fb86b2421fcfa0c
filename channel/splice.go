package channel

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/tether-dev/tether/calls"
	"github.com/tether-dev/tether/tunnel"
)

// copyBufSize is the buffer of one copy direction when the kernel cannot
// splice (e.g. one side is a tunnel stream). A direction whose read fills it
// (a bulk transfer: more data is waiting) moves to a bulkBufSize buffer, so
// that each read takes several SSH packets at once: fewer write(2) calls to
// the app and fewer SSH window adjustments per byte. Idle and interactive
// connections, the common case with thousands of them, keep the small one.
const (
	copyBufSize = 32 << 10
	bulkBufSize = 256 << 10
)

var (
	copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}
	bulkBufs = sync.Pool{New: func() any { b := make([]byte, bulkBufSize); return &b }}
)

// splice copies between the app's connection and the target's until both
// directions end, propagating half-closes, then closes both. pre holds bytes
// already read from client that go to up first. It returns the bytes sent
// (client to up, including pre) and received (up to client). obs, if not
// nil, reads the calls of the connection on the way; splice ends it.
func splice(client, up net.Conn, pre []byte, obs *calls.Conn) (sent, received int64) {
	var reqs, resps *calls.Side
	if obs != nil {
		reqs, resps = obs.Requests(), obs.Responses()
		defer obs.End()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if len(pre) > 0 {
			if reqs != nil {
				reqs.Write(pre)
			}
			n, err := up.Write(pre)
			sent = int64(n)
			if err != nil {
				endDirection(up, client, err)
				return
			}
		}
		n, err := copyConn(up, client, reqs)
		sent += n
		endDirection(up, client, err)
	}()
	n, err := copyConn(client, up, resps)
	received = n
	endDirection(client, up, err)
	<-done
	client.Close()
	up.Close()
	return sent, received
}

// endDirection is called when copying src to dst has stopped with err. On
// EOF it half-closes dst so that the peer sees the end of the stream and the
// other direction goes on; on error, or if dst cannot half-close, it closes
// both so that the other direction stops too.
func endDirection(dst, src net.Conn, err error) {
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
	src.Close()
}

// spliceMin is the smallest body that an observed copy between two TCP
// sockets hands to the kernel (splice(2)) instead of reading it.
const spliceMin = 64 << 10

// copyConn copies src to dst until EOF (returning nil) or an error. Between
// two TCP sockets io.Copy lets the kernel splice; otherwise it copies through
// pooled buffers (see copyBufSize), like io.CopyBuffer. side, if not nil,
// sees every byte before it is written, except the bodies it says it may
// skip (see calls.Side.Skip).
func copyConn(dst, src net.Conn, side *calls.Side) (int64, error) {
	if _, ok := dst.(*net.TCPConn); ok {
		if _, ok := src.(*net.TCPConn); ok {
			if side == nil {
				return io.Copy(dst, src)
			}
			return copyTCPObserved(dst, src, side)
		}
	}
	pool := &copyBufs
	bp := pool.Get().(*[]byte)
	defer func() { pool.Put(bp) }()
	buf := *bp
	var written int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			if side != nil {
				side.Write(buf[:nr])
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
		if nr == len(buf) && pool == &copyBufs {
			pool.Put(bp)
			pool = &bulkBufs
			bp = pool.Get().(*[]byte)
			buf = *bp
		}
	}
}

// copyTCPObserved copies between two TCP sockets through a small buffer
// while side reads heads, and lets the kernel splice the bodies it skips
// and everything once it has stopped reading.
func copyTCPObserved(dst, src net.Conn, side *calls.Side) (int64, error) {
	var written int64
	var bp *[]byte
	defer func() {
		if bp != nil {
			copyBufs.Put(bp)
		}
	}()
	for {
		if skip := side.Skip(); skip >= spliceMin {
			r := io.Reader(src)
			if skip != math.MaxInt64 {
				r = io.LimitReader(src, skip)
			}
			n, err := io.Copy(dst, r)
			written += n
			side.Skipped(n)
			if err != nil || n < skip {
				return written, err // EOF (nil) or an error
			}
			continue
		}
		if bp == nil {
			bp = copyBufs.Get().(*[]byte)
		}
		nr, rerr := src.Read(*bp)
		if nr > 0 {
			side.Write((*bp)[:nr])
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

// replyCode maps a dial error to a SOCKS5 reply code.
func replyCode(err error) byte {
	var de *tunnel.DialError
	if errors.As(err, &de) {
		switch de.Reason {
		case tunnel.Refused:
			return repConnectionRefused
		case tunnel.NoSuchHost:
			return repHostUnreachable
		case tunnel.Unreachable:
			if errors.Is(de.Err, syscall.ENETUNREACH) {
				return repNetworkUnreachable
			}
			return repHostUnreachable
		}
		return repGeneralFailure
	}
	// Direct dials: net and syscall errors.
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return repConnectionRefused
	case errors.As(err, &dnsErr):
		return repHostUnreachable
	case errors.Is(err, syscall.ENETUNREACH):
		return repNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return repHostUnreachable
	}
	return repGeneralFailure
}
