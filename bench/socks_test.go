package bench

import (
	"context"
	"net"

	"github.com/tether-dev/tether/internal/socks5"
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
	d := socks5.Dialer{Proxy: p.addr, User: p.user, Password: p.pass}
	return d.DialContext(ctx, "tcp", target)
}
