// Package peercred tells who is at the other end of a local connection: the
// OS user of a loopback TCP peer, the user and process of a unix socket
// peer. Listeners that cannot ask for credentials (a JDWP or DAP port, a
// SOCKS client that sends none) let in only their own user's processes.
package peercred

import (
	"errors"
	"net"
	"os"
)

// Cred is what the kernel knows about a peer.
type Cred struct {
	UID int
	PID int // 0 when unknown: the kernel does not keep it for TCP sockets
}

var (
	// ErrNotLocal: the connection is not a loopback TCP or a unix one.
	ErrNotLocal = errors.New("peercred: not a loopback TCP or unix socket connection")
	// ErrNotFound: the peer socket was not found (it is gone, or it is in
	// another network namespace).
	ErrNotFound = errors.New("peercred: peer socket not found")
)

// Get returns the credentials of c's peer. It fails with
// errors.ErrUnsupported where the platform cannot tell.
func Get(c net.Conn) (Cred, error) { return get(c) }

// SameUser reports whether c's peer runs as this process's user; false
// when that cannot be found out.
func SameUser(c net.Conn) bool {
	cr, err := Get(c)
	return err == nil && cr.UID == os.Getuid()
}
