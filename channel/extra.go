package channel

import (
	"context"
	"errors"
	"net"
)

// ListenSOCKS serves SOCKS5 on one more address — the Docker bridge gateway,
// so that a sidecar container reaches the channel — until Close. Clients
// there always need the session's credentials: same-user trust applies to
// loopback peers only. It returns the address it listens on.
func (c *Channel) ListenSOCKS(addr string) (string, error) {
	if !c.enter() {
		return "", errors.New("channel: closed")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		c.wg.Done()
		return "", err
	}
	context.AfterFunc(c.ctx, func() { ln.Close() })
	go func() {
		defer c.wg.Done()
		c.acceptLoop(ln)
	}()
	return ln.Addr().String(), nil
}
