package channel

import (
	"net"

	"github.com/tether-dev/tether/calls"
	"github.com/tether-dev/tether/internal/relay"
)

// splice copies between the app's connection and the target's until both
// directions end, propagating half-closes, then closes both (package
// relay). pre holds bytes already read from client that go to up first.
// It returns the bytes sent (client to up, including pre) and received (up
// to client). obs, if not nil, reads the calls of the connection on the
// way; splice ends it.
func splice(client, up net.Conn, pre []byte, obs *calls.Conn) (sent, received int64) {
	opts := []relay.Option{relay.Prefix(pre)}
	if obs != nil {
		defer obs.End()
		opts = append(opts, relay.Taps(obs.Requests(), obs.Responses()))
	}
	sent, received, _ = relay.Conns(client, up, opts...)
	return sent, received
}
