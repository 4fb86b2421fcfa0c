package ssh

import (
	"context"

	"github.com/tether-dev/tether/internal/errcat"
)

// Exec runs a command on the proxy machine and returns its standard output.
// Tether uses it only to discover the proxy machine's addresses; servers
// without shell sessions (tether-agent) refuse it.
func (t *Tunnel) Exec(ctx context.Context, cmd string) ([]byte, error) {
	c, err := t.pick(ctx, false)
	if err != nil {
		return nil, err
	}
	sess, err := c.client.NewSession()
	if err != nil {
		return nil, errcat.Environment.Newf("%s refused a session: %w", t.side, err)
	}
	defer sess.Close()
	type result struct {
		out []byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		out, err := sess.Output(cmd)
		res <- result{out, err}
	}()
	select {
	case r := <-res:
		return r.out, errcat.Environment.Wrap(r.err)
	case <-ctx.Done():
		sess.Close()
		return nil, errcat.Environment.Wrap(ctx.Err())
	}
}
