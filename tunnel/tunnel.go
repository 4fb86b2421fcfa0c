// Package tunnel defines what every transport offers to the code that carries
// bytes (channel, JDWP forward, DAP bridge, sidecar upstream): dialling from the
// far side, listening on the far side, health, and close.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// State is the health of a tunnel as the IDE shows it.
type State string

const (
	Connecting   State = "connecting"   // first connect in progress
	Connected    State = "connected"    // usable
	Reconnecting State = "reconnecting" // lost; new dials wait for the reconnect
	Closed       State = "closed"       // closed by the user or failed for good
)

// Event is a state change. Err says why a tunnel left Connected.
type Event struct {
	State State
	Err   error
	Time  time.Time
}

// Tunnel is a connection to the cloud side.
type Tunnel interface {
	// Dial opens a stream to address ("host:port") from the far side. Host
	// names are resolved on the far side. Failures are *DialError.
	Dial(ctx context.Context, network, address string) (net.Conn, error)
	// Listen listens on the far side (reverse: cloud -> local).
	Listen(ctx context.Context, network, address string) (net.Listener, error)
	// State reports the current state.
	State() State
	// Watch calls fn for every state change until cancel is called. fn must
	// not block.
	Watch(fn func(Event)) (cancel func())
	// Close closes the tunnel and every stream on it.
	Close() error
}

// Reason classifies a failed dial so that users get a message that explains
// itself ("refused by the proxy machine", "no such host on the proxy machine").
type Reason string

const (
	Refused     Reason = "refused"      // the target refused the connection
	NoSuchHost  Reason = "no-such-host" // the far side could not resolve the name
	Unreachable Reason = "unreachable"  // no route / timeout from the far side
	TunnelDown  Reason = "tunnel-down"  // the tunnel itself is not usable
	Other       Reason = "other"
)

// DialError is returned by Tunnel.Dial.
type DialError struct {
	Address string // what was dialled, "host:port"
	Reason  Reason
	Side    string // who failed, e.g. "the proxy machine"
	Err     error
}

func (e *DialError) Error() string {
	host, _, _ := net.SplitHostPort(e.Address)
	switch e.Reason {
	case Refused:
		return fmt.Sprintf("%s refused by %s", e.Address, e.side())
	case NoSuchHost:
		return fmt.Sprintf("%s: no such host on %s", host, e.side())
	case Unreachable:
		return fmt.Sprintf("%s unreachable from %s: %v", e.Address, e.side(), e.Err)
	case TunnelDown:
		return fmt.Sprintf("%s unreachable: %v", e.side(), e.Err)
	}
	return fmt.Sprintf("dial %s through %s: %v", e.Address, e.side(), e.Err)
}

func (e *DialError) side() string {
	if e.Side == "" {
		return "the proxy machine"
	}
	return e.Side
}

func (e *DialError) Unwrap() error { return e.Err }

// ReasonOf returns the Reason of a dial error, or Other.
func ReasonOf(err error) Reason {
	var de *DialError
	if errors.As(err, &de) {
		return de.Reason
	}
	return Other
}
