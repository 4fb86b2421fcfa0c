package channel

import (
	"net"

	"github.com/tether-dev/tether/calls"
)

// Splice copies between a and b both ways until both directions end,
// propagating half-closes, then closes both (relay.Conns). It returns the
// bytes copied a to b and b to a.
func Splice(a, b net.Conn) (aToB, bToA int64) { return splice(a, b, nil, nil) }

// SpliceCalls is Splice that also reads the HTTP calls a makes to b with
// obs (nil: none), and ends obs.
func SpliceCalls(a, b net.Conn, obs *calls.Conn) (aToB, bToA int64) { return splice(a, b, nil, obs) }
