package socks5

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// ReplyError is a server's refusal of a CONNECT.
type ReplyError struct{ Reply Reply }

func (e *ReplyError) Error() string { return "socks5: " + e.Reply.String() }

// Connect asks the SOCKS5 server at the other end of rw to connect to
// target ("host:port", host a name or an IP), one round trip per step.
// With a user it authenticates with username/password (RFC 1929), else it
// offers no authentication. It reads exactly the server's replies, so that
// afterwards rw carries the target's stream. A refusal is a *ReplyError.
func Connect(rw io.ReadWriter, target, user, pass string) error {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return fmt.Errorf("socks5: bad port in %q", target)
	}
	if len(user) > 255 || len(pass) > 255 {
		return errors.New("socks5: user name or password longer than 255 bytes")
	}
	req := []byte{Version, CmdConnect, 0}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.Is4() {
			req = append(req, atypIPv4)
		} else {
			req = append(req, atypIPv6)
		}
		req = append(req, ip.AsSlice()...)
	} else {
		if len(host) > 255 {
			return errors.New("socks5: host name too long")
		}
		req = append(req, atypDomain, byte(len(host)))
		req = append(req, host...)
	}
	req = append(req, byte(port>>8), byte(port))

	method := MethodNone
	if user != "" {
		method = MethodUserPass
	}
	if _, err := rw.Write([]byte{Version, 1, method}); err != nil {
		return err
	}
	var b [16 + 2]byte
	if _, err := io.ReadFull(rw, b[:2]); err != nil {
		return err
	}
	if b[0] != Version {
		return ErrVersion
	}
	if b[1] != method {
		return ErrNoAcceptableMethod
	}
	if method == MethodUserPass {
		auth := append([]byte{authVersion, byte(len(user))}, user...)
		auth = append(auth, byte(len(pass)))
		auth = append(auth, pass...)
		if _, err := rw.Write(auth); err != nil {
			return err
		}
		if _, err := io.ReadFull(rw, b[:2]); err != nil {
			return err
		}
		if b[1] != authSuccess {
			return ErrAuthFailed
		}
	}
	if _, err := rw.Write(req); err != nil {
		return err
	}
	// VER REP RSV ATYP BND.ADDR BND.PORT
	if _, err := io.ReadFull(rw, b[:4]); err != nil {
		return err
	}
	if b[0] != Version {
		return ErrVersion
	}
	if b[1] != byte(Succeeded) {
		return &ReplyError{Reply(b[1])}
	}
	var rest int
	switch b[3] {
	case atypIPv4:
		rest = 4 + 2
	case atypIPv6:
		rest = 16 + 2
	case atypDomain:
		if _, err := io.ReadFull(rw, b[:1]); err != nil {
			return err
		}
		rest = int(b[0]) + 2
	default:
		return fmt.Errorf("socks5: bad address type %d in reply", b[3])
	}
	_, err = io.CopyN(io.Discard, rw, int64(rest))
	return err
}

// Dialer connects through a SOCKS5 server.
type Dialer struct {
	// Proxy is the server, "host:port".
	Proxy string
	// User and Password authenticate (RFC 1929); no User: no authentication.
	User, Password string
	// Dial opens the connection to Proxy; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds the handshake after the dial; 0: only ctx.
	HandshakeTimeout time.Duration
}

// DialContext connects to target ("host:port", resolved by the server)
// through the server. network must be a TCP one.
func (d *Dialer) DialContext(ctx context.Context, network, target string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("socks5: network %q not supported", network)
	}
	dial := d.Dial
	if dial == nil {
		var nd net.Dialer
		dial = nd.DialContext
	}
	conn, err := dial(ctx, "tcp", d.Proxy)
	if err != nil {
		return nil, err
	}
	var deadline time.Time
	if d.HandshakeTimeout > 0 {
		deadline = time.Now().Add(d.HandshakeTimeout)
	}
	if dl, ok := ctx.Deadline(); ok && (deadline.IsZero() || dl.Before(deadline)) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	err = Connect(conn, target, d.User, d.Password)
	if !stop() && err == nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}
