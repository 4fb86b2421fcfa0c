package peercred

import (
	"net"
	"os"
	"testing"
)

// checkTCPLookups checks both ways of finding a TCP peer's owner: the
// sock_diag query and its /proc fallback.
func checkTCPLookups(t *testing.T, s net.Conn) {
	t.Helper()
	ra, ok := s.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return
	}
	la := s.LocalAddr().(*net.TCPAddr)
	if uid, err := diagUID(ra, la); err != nil || uid != os.Getuid() {
		t.Errorf("sock_diag uid %d, %v", uid, err)
	}
	if uid, err := procUID(ra, la); err != nil || uid != os.Getuid() {
		t.Errorf("/proc uid %d, %v", uid, err)
	}
}
