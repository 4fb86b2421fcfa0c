package channel

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/peercred"
	"github.com/tether-dev/tether/internal/socks5"
	"github.com/tether-dev/tether/tunnel"
)

// handshakeTimeout bounds a SOCKS5 client's handshake.
const handshakeTimeout = 30 * time.Second

// socksAuth is the SOCKS5 listener's policy: the session's credentials,
// compared in constant time. If trusted is not nil, it decides whether a
// client that offers only "no authentication", or sends an empty password,
// may skip the credentials (see Config.TrustSameUser); wrong credentials
// that were actually given are always refused.
func socksAuth(user, pass []byte, trusted func() bool) socks5.Auth {
	return socks5.Auth{
		Check: func(name, secret []byte) bool {
			ok := subtle.ConstantTimeCompare(name, user) & subtle.ConstantTimeCompare(secret, pass)
			// A JVM sends user.name and no password.
			return ok == 1 || len(secret) == 0 && trusted != nil && trusted()
		},
		NoAuth: trusted,
	}
}

// serveSOCKS handles one SOCKS5 client connection until it is spliced and done.
func (c *Channel) serveSOCKS(conn net.Conn) {
	defer conn.Close()
	start := time.Now()
	buf := make([]byte, socks5.BufSize)
	conn.SetDeadline(start.Add(handshakeTimeout))
	var trusted func() bool
	if c.cfg.TrustSameUser {
		trusted = func() bool { return peercred.SameUser(conn) }
	}
	// The handshake reads through a small buffer: one read(2) per client
	// message instead of one per field (eight per connection). Bytes the
	// client sent after its request are handed to splice.
	br := bufio.NewReaderSize(conn, 2*socks5.BufSize)
	if err := socks5.ServerAuth(struct {
		io.Reader
		io.Writer
	}{br, conn}, buf, socksAuth(c.user, c.pass, trusted)); err != nil {
		c.log.Debug("socks5 handshake failed", "client", conn.RemoteAddr().String(), "err", err)
		return
	}
	_, target, err := socks5.ReadRequest(br, buf)
	if err != nil {
		var re *socks5.RequestError
		if errors.As(err, &re) {
			socks5.WriteReply(conn, re.Reply)
		}
		c.log.Debug("socks5 request refused", "client", conn.RemoteAddr().String(), "target", target, "err", err)
		return
	}
	rec := Record{Start: start, Target: target, Client: "socks5"}
	up, route, err := c.dial(c.ctx, target)
	rec.Route = route
	if err != nil {
		socks5.WriteReply(conn, replyCode(err))
		rec.Err = err.Error()
		c.finish(rec, false)
		return
	}
	defer up.Close()
	if !c.track(up) {
		socks5.WriteReply(conn, socks5.GeneralFailure)
		rec.Err = "channel closed"
		c.finish(rec, false)
		return
	}
	defer c.untrack(up)
	c.connected()
	if err := socks5.WriteReply(conn, socks5.Succeeded); err == nil {
		conn.SetDeadline(time.Time{})
		var pre []byte
		if n := br.Buffered(); n > 0 {
			pre, _ = br.Peek(n)
		}
		rec.Sent, rec.Received = splice(conn, up, pre, c.observe(target))
	}
	c.finish(rec, true)
}

// replyCode maps a dial error to a SOCKS5 reply code.
func replyCode(err error) socks5.Reply {
	var de *tunnel.DialError
	if errors.As(err, &de) {
		switch de.Reason {
		case tunnel.Refused:
			return socks5.ConnectionRefused
		case tunnel.NoSuchHost:
			return socks5.HostUnreachable
		case tunnel.Unreachable:
			if errors.Is(de.Err, syscall.ENETUNREACH) {
				return socks5.NetworkUnreachable
			}
			return socks5.HostUnreachable
		}
		return socks5.GeneralFailure
	}
	// Direct dials: net and syscall errors.
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return socks5.ConnectionRefused
	case errors.As(err, &dnsErr):
		return socks5.HostUnreachable
	case errors.Is(err, syscall.ENETUNREACH):
		return socks5.NetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return socks5.HostUnreachable
	}
	return socks5.GeneralFailure
}
