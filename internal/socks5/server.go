package socks5

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"

	"github.com/tether-dev/tether/internal/routes"
)

// Auth says which clients a server lets in.
type Auth struct {
	// Check verifies username/password credentials (RFC 1929); nil means
	// the method is not offered. The slices are valid during the call only
	// (the password is cleared afterwards).
	Check func(user, pass []byte) bool
	// NoAuth, if not nil, decides whether a client that offers "no
	// authentication" and not username/password may go without.
	NoAuth func() bool
}

// ServerAuth runs the method negotiation and, if username/password is
// chosen, the RFC 1929 authentication on rw. It writes the replies,
// failures included; on error the caller closes the connection. buf must
// hold BufSize bytes.
func ServerAuth(rw io.ReadWriter, buf []byte, a Auth) error {
	// VER NMETHODS METHODS...
	if _, err := io.ReadFull(rw, buf[:2]); err != nil {
		return err
	}
	if buf[0] != Version {
		return ErrVersion
	}
	methods := buf[:buf[1]]
	if _, err := io.ReadFull(rw, methods); err != nil {
		return err
	}
	userPass, none := false, false
	for _, m := range methods {
		switch m {
		case MethodUserPass:
			userPass = a.Check != nil
		case MethodNone:
			none = true
		}
	}
	if none && !userPass && a.NoAuth != nil && a.NoAuth() {
		_, err := rw.Write([]byte{Version, MethodNone})
		return err
	}
	if !userPass {
		rw.Write([]byte{Version, MethodNoAcceptable})
		return ErrNoAcceptableMethod
	}
	if _, err := rw.Write([]byte{Version, MethodUserPass}); err != nil {
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
	ulen := int(buf[1])
	if _, err := io.ReadFull(rw, buf[:ulen+1]); err != nil {
		return err
	}
	name, plen := buf[:ulen], int(buf[ulen])
	secret := buf[ulen+1 : ulen+1+plen]
	if _, err := io.ReadFull(rw, secret); err != nil {
		return err
	}
	ok := a.Check(name, secret)
	clear(secret)
	if !ok {
		rw.Write([]byte{authVersion, authFailure})
		return ErrAuthFailed
	}
	_, err := rw.Write([]byte{authVersion, authSuccess})
	return err
}

// RequestError is a request that was read but cannot be served; Reply is
// the reply to send.
type RequestError struct {
	Reply Reply
	Msg   string
}

func (e *RequestError) Error() string { return "socks5: " + e.Msg }

// ReadRequest reads a request (VER CMD RSV ATYP DST.ADDR DST.PORT) and
// returns the command and the target as "host:port". Domain names are
// returned as sent, never resolved; a domain that is an IP literal is
// returned as that IP. A *RequestError (for a command other than CONNECT,
// an unknown address type, a malformed name) says which reply to send;
// other errors are I/O errors. It reads nothing past the request. buf must
// hold BufSize bytes.
func ReadRequest(r io.Reader, buf []byte) (cmd byte, target string, err error) {
	if _, err := io.ReadFull(r, buf[:4]); err != nil {
		return 0, "", err
	}
	if buf[0] != Version {
		return 0, "", ErrVersion
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
			return cmd, "", &RequestError{HostUnreachable, fmt.Sprintf("invalid host name %q", name)}
		} else {
			host = string(name)
		}
	default:
		return cmd, "", &RequestError{AddressNotSupported, fmt.Sprintf("address type %d not supported", atyp)}
	}
	port := uint16(buf[0])<<8 | uint16(buf[1])
	if ip.IsValid() {
		target = netip.AddrPortFrom(ip, port).String()
	} else {
		target = host + ":" + strconv.Itoa(int(port))
	}
	if cmd != CmdConnect {
		return cmd, target, &RequestError{CommandNotSupported, fmt.Sprintf("command %d not supported (only CONNECT)", cmd)}
	}
	return cmd, target, nil
}

// replies holds the wire form of the known replies, with bind address
// 0.0.0.0:0, so that replying allocates nothing.
var replies = func() (r [AddressNotSupported + 1][10]byte) {
	for code := range r {
		r[code] = [10]byte{Version, byte(code), 0, atypIPv4}
	}
	return r
}()

// WriteReply writes the reply rep with bind address 0.0.0.0:0.
func WriteReply(w io.Writer, rep Reply) error {
	var err error
	if int(rep) < len(replies) {
		_, err = w.Write(replies[rep][:])
	} else {
		_, err = w.Write([]byte{Version, byte(rep), 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	}
	return err
}
