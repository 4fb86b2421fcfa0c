package ssh

import (
	"context"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/internal/errcat"
)

// pinnedAlgorithms are the host key algorithms to ask for a pinned key.
func pinnedAlgorithms(k ssh.PublicKey) []string {
	if k.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{k.Type()}
}

// SendRequest sends a global request on one live connection of the pool
// (waiting, bounded by ctx, while the tunnel reconnects) and returns the
// server's answer.
func (t *Tunnel) SendRequest(ctx context.Context, name string, payload []byte) (ok bool, reply []byte, err error) {
	c, err := t.pick(ctx, false)
	if err != nil {
		return false, nil, err
	}
	type res struct {
		ok    bool
		reply []byte
		err   error
	}
	ch := make(chan res, 1)
	go func() {
		ok, reply, err := c.client.SendRequest(name, true, payload)
		ch <- res{ok, reply, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return false, nil, errcat.Environment.Newf("ssh request %s: %w", name, r.err)
		}
		return r.ok, r.reply, nil
	case <-ctx.Done():
		return false, nil, errcat.Environment.Newf("ssh request %s: %w", name, ctx.Err())
	}
}
