package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// proxy is a SOCKS5 endpoint; user == "" means no authentication.
type proxy struct {
	name       string
	addr       string
	user, pass string
	pid        int // the proxy's process, if not this one
}

// dial connects to target (an "ip:port") through the proxy with a minimal
// RFC 1928/1929 client: one round trip per step, as curl and browsers do.
func (p proxy) dial(ctx context.Context, target string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("target %q: want an IPv4 ip:port", target)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := p.handshake(conn, ap); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

func (p proxy) handshake(conn net.Conn, ap netip.AddrPort) error {
	var buf [512]byte
	method := byte(0x00)
	if p.user != "" {
		method = 0x02
	}
	if _, err := conn.Write([]byte{5, 1, method}); err != nil {
		return err
	}
	if _, err := io.ReadFull(conn, buf[:2]); err != nil {
		return fmt.Errorf("socks greeting: %w", err)
	}
	if buf[0] != 5 || buf[1] != method {
		return fmt.Errorf("socks: method %#x refused", method)
	}
	if p.user != "" {
		m := append(buf[:0], 1, byte(len(p.user)))
		m = append(m, p.user...)
		m = append(m, byte(len(p.pass)))
		m = append(m, p.pass...)
		if _, err := conn.Write(m); err != nil {
			return err
		}
		if _, err := io.ReadFull(conn, buf[:2]); err != nil {
			return fmt.Errorf("socks auth: %w", err)
		}
		if buf[1] != 0 {
			return errors.New("socks: authentication failed")
		}
	}
	a4 := ap.Addr().As4()
	req := append(buf[:0], 5, 1, 0, 1)
	req = append(req, a4[:]...)
	req = binary.BigEndian.AppendUint16(req, ap.Port())
	if _, err := conn.Write(req); err != nil {
		return err
	}
	// Reply: VER REP RSV ATYP BND.ADDR BND.PORT
	if _, err := io.ReadFull(conn, buf[:4]); err != nil {
		return fmt.Errorf("socks connect: %w", err)
	}
	if buf[1] != 0 {
		return fmt.Errorf("socks: connect to %s: reply %d", ap, buf[1])
	}
	var rest int
	switch buf[3] {
	case 1:
		rest = 4 + 2
	case 4:
		rest = 16 + 2
	case 3:
		if _, err := io.ReadFull(conn, buf[:1]); err != nil {
			return err
		}
		rest = int(buf[0]) + 2
	default:
		return fmt.Errorf("socks: bad address type %d", buf[3])
	}
	_, err := io.ReadFull(conn, buf[:rest])
	return err
}
