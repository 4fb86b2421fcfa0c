//go:build !linux

package channel

import "net"

// sameUserPeer: without a way to find a socket's owner, nobody is trusted
// without credentials.
func sameUserPeer(c net.Conn) bool { return false }
