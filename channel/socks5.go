package channel

import (
	"bufio"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/tether-dev/tether/internal/routes"
)

// SOCKS5 wire constants (RFC 1928, RFC 1929).
const (
	socksVersion     = 0x05
	authVersion      = 0x01 // RFC 1929 sub-negotiation version
	methodNone       = 0x00
	methodUserPass   = 0x02
	methodNoneOK     = 0xFF // "no acceptable methods"
	cmdConnect       = 0x01
	atypIPv4         = 0x01
	atypDomain       = 0x03
	atypIPv6         = 0x04
	authSuccess      = 0x00
	authFailure      = 0x01
	socksBufSize     = 262 // largest request: 4 + 1 + 255 + 2
	handshakeTimeout = 30 * time.Second
)

// SOCKS5 reply codes (RFC 1928 section 6).
const (
	repSucceeded          byte = 0x00
	repGeneralFailure     byte = 0x01
	repNotAllowed         byte = 0x02
	repNetworkUnreachable byte = 0x03
	repHostUnreachable    byte = 0x04
	repConnectionRefused  byte = 0x05
	repCmdNotSupported    byte = 0x07
	repAddrNotSupported   byte = 0x08
)

// socksReplies holds the wire form of every reply, with bind address
// 0.0.0.0:0, so that replying allocates nothing.
var socksReplies = func() (r [9][10]byte) {
	for code := range r {
		r[code] = [10]byte{socksVersion, byte(code), 0, atypIPv4}
	}
	return r
}()

var (
	errSOCKSVersion = errors.New("socks5: not a SOCKS5 client")
	errNoUserPass   = errors.New("socks5: client does not offer username/password authentication")
	errBadAuth      = errors.New("socks5: wrong username or password")
)

// requestError is a SOCKS5 request that was read but cannot be served; rep is
// the reply code to send.
type requestError struct {
	rep byte
	msg string
}

func (e *requestError) Error() string { return "socks5: " + e.msg }

// socksAuth runs method negotiation and RFC 1929 username/password
// authentication on rw. It writes the replies, including the failure replies;
// on error the caller closes the connection. buf must hold socksBufSize bytes.
//
// If trusted is not nil, it decides whether a client that offers only "no
// authentication", or sends an empty password, may skip the credentials
// (see Config.TrustSameUser).
func socksAuth(rw io.ReadWriter, buf []byte, user, pass []byte, trusted func() bool) error {
	// VER NMETHODS METHODS...
	if _, err := io.ReadFull(rw, buf[:2]); err != nil {
		return err
	}
	if buf[0] != socksVersion {
		return errSOCKSVersion
	}
	methods := buf[:buf[1]]
	if _, err := io.ReadFull(rw, methods); err != nil {
		return err
	}
	offered, none := false, false
	for _, m := range methods {
		switch m {
		case methodUserPass:
			offered = true
		case methodNone:
			none = true
		}
	}
	if none && !offered && trusted != nil && trusted() {
		_, err := rw.Write([]byte{socksVersion, methodNone})
		return err
	}
	if !offered {
		rw.Write([]byte{socksVersion, methodNoneOK})
		return errNoUserPass
	}
	if _, err := rw.Write([]byte{socksVersion, methodUserPass}); err != nil {
		return err
	}

	// VER ULEN UNAME PLEN PASSWD
	if _, err := io.ReadFull(rw, buf[:2]); err != nil {
		return err
	}
	if buf[0] != authVersion {
		rw.Write([]byte{authVersion, authFailure})
		return fmt.Errorf("socks5: auth version %d, want 1", buf[0])
	}
	name := buf[:buf[1]]
	if _, err := io.ReadFull(rw, name); err != nil {
		return err
	}
	ok := subtle.ConstantTimeCompare(name, user)
	if _, err := io.ReadFull(rw, buf[:1]); err != nil {
		return err
	}
	secret := buf[:buf[0]]
	if _, err := io.ReadFull(rw, secret); err != nil {
		return err
	}
	ok &= subtle.ConstantTimeCompare(secret, pass)
	// A JVM sends user.name and no password (see Config.TrustSameUser);
	// wrong credentials that were actually given are always refused.
	if ok != 1 && len(secret) == 0 && trusted != nil && trusted() {
		ok = 1
	}
	clear(secret)
	if ok != 1 {
		rw.Write([]byte{authVersion, authFailure})
		return errBadAuth
	}
	_, err := rw.Write([]byte{authVersion, authSuccess})
	return err
}

// readRequest reads a SOCKS5 request (VER CMD RSV ATYP DST.ADDR DST.PORT) and
// returns the command and the target as "host:port". Domain names are
// returned as sent, never resolved; a domain that is an IP literal is returned
// as that IP. A *requestError says which reply to send; other errors are I/O
// errors. buf must hold socksBufSize bytes.
func readRequest(r io.Reader, buf []byte) (cmd byte, target string, err error) {
	if _, err := io.ReadFull(r, buf[:4]); err != nil {
		return 0, "", err
	}
	if buf[0] != socksVersion {
		return 0, "", errSOCKSVersion
	}
	cmd = buf[1]
	var host string
	var ip netip.Addr
	switch atyp := buf[3]; atyp {
	case atypIPv4:
		if _, err := io.ReadFull(r, buf[:4+2]); err != nil {
			return 0, "", err
		}
		ip = netip.AddrFrom4([4]byte(buf[:4]))
		buf = buf[4:]
	case atypIPv6:
		if _, err := io.ReadFull(r, buf[:16+2]); err != nil {
			return 0, "", err
		}
		ip = netip.AddrFrom16([16]byte(buf[:16])).Unmap()
		buf = buf[16:]
	case atypDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return 0, "", err
		}
		n := int(buf[0])
		if _, err := io.ReadFull(r, buf[:n+2]); err != nil {
			return 0, "", err
		}
		name := buf[:n]
		buf = buf[n:]
		if a, err := netip.ParseAddr(string(name)); err == nil && a.Zone() == "" {
			ip = a.Unmap()
		} else if !routes.ValidName(string(name)) {
			return cmd, "", &requestError{repHostUnreachable, fmt.Sprintf("invalid host name %q", name)}
		} else {
			host = string(name)
		}
	default:
		return cmd, "", &requestError{repAddrNotSupported, fmt.Sprintf("address type %d not supported", atyp)}
	}
	port := uint16(buf[0])<<8 | uint16(buf[1])
	if ip.IsValid() {
		target = netip.AddrPortFrom(ip, port).String()
	} else {
		target = host + ":" + strconv.Itoa(int(port))
	}
	if cmd != cmdConnect {
		return cmd, target, &requestError{repCmdNotSupported, fmt.Sprintf("command %d not supported (only CONNECT)", cmd)}
	}
	return cmd, target, nil
}

// serveSOCKS handles one SOCKS5 client connection until it is spliced and done.
func (c *Channel) serveSOCKS(conn net.Conn) {
	defer conn.Close()
	start := time.Now()
	buf := make([]byte, socksBufSize)
	conn.SetDeadline(start.Add(handshakeTimeout))
	var trusted func() bool
	if c.cfg.TrustSameUser {
		trusted = func() bool { return sameUserPeer(conn) }
	}
	// The handshake reads through a small buffer: one read(2) per client
	// message instead of one per field (eight per connection). Bytes the
	// client sent after its request are handed to splice.
	br := bufio.NewReaderSize(conn, 2*socksBufSize)
	if err := socksAuth(struct {
		io.Reader
		io.Writer
	}{br, conn}, buf, c.user, c.pass, trusted); err != nil {
		c.log.Debug("socks5 handshake failed", "client", conn.RemoteAddr().String(), "err", err)
		return
	}
	_, target, err := readRequest(br, buf)
	if err != nil {
		var re *requestError
		if errors.As(err, &re) {
			conn.Write(socksReplies[re.rep][:])
		}
		c.log.Debug("socks5 request refused", "client", conn.RemoteAddr().String(), "target", target, "err", err)
		return
	}
	rec := Record{Start: start, Target: target, Client: "socks5"}
	up, route, err := c.dial(c.ctx, target)
	rec.Route = route
	if err != nil {
		conn.Write(socksReplies[replyCode(err)][:])
		rec.Err = err.Error()
		c.finish(rec, false)
		return
	}
	defer up.Close()
	if !c.track(up) {
		conn.Write(socksReplies[repGeneralFailure][:])
		rec.Err = "channel closed"
		c.finish(rec, false)
		return
	}
	defer c.untrack(up)
	c.connected()
	if _, err := conn.Write(socksReplies[repSucceeded][:]); err == nil {
		conn.SetDeadline(time.Time{})
		var pre []byte
		if n := br.Buffered(); n > 0 {
			pre, _ = br.Peek(n)
		}
		rec.Sent, rec.Received = splice(conn, up, pre, c.observe(target))
	}
	c.finish(rec, true)
}
