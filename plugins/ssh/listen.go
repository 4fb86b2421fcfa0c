package ssh

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/tether-dev/tether/internal/errcat"
)

// Listen asks the proxy machine to listen on address (tcpip-forward) and
// returns a listener for the connections it accepts. address must be an IP
// and port ("0.0.0.0:0" for any); with GatewayPorts clientspecified in sshd
// it may be a non-loopback address of the proxy machine.
//
// The listener lives on one SSH connection of the pool: when that connection
// dies, Accept returns an error and the caller must Listen again (it is not
// re-established after a reconnect).
func (t *Tunnel) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("listen %s: network %q not supported", address, network)
	}
	c, err := t.pick(ctx, false)
	if err != nil {
		return nil, errcat.Environment.Newf("listen %s on %s: %w", address, t.side, err)
	}
	type result struct {
		ln  net.Listener
		err error
	}
	res := make(chan result, 1)
	go func() {
		ln, err := c.client.Listen(network, address)
		res <- result{ln, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		go func() {
			if r := <-res; r.ln != nil {
				r.ln.Close()
			}
		}()
		return nil, errcat.Environment.Newf("listen %s on %s: %w", address, t.side, ctx.Err())
	}
	if r.err != nil {
		return nil, errcat.Environment.Newf("listen %s on %s: %w", address, t.side, r.err)
	}
	l := &listener{Listener: r.ln, t: t}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		r.ln.Close()
		return nil, ErrClosed
	}
	t.listeners[l] = struct{}{}
	t.mu.Unlock()
	return l, nil
}

type listener struct {
	net.Listener
	t    *Tunnel
	once sync.Once
}

func (l *listener) Close() error {
	var err error
	l.once.Do(func() {
		err = l.Listener.Close()
		l.t.mu.Lock()
		delete(l.t.listeners, l)
		l.t.mu.Unlock()
	})
	return err
}
