package channel

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// sameUserPeer reports whether the other end of a loopback TCP connection
// is a socket owned by this process's user, from /proc/net/tcp{,6}.
func sameUserPeer(c net.Conn) bool {
	remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || !remote.IP.IsLoopback() {
		return false
	}
	uid, err := socketUID(remote.AddrPort(), local.AddrPort())
	return err == nil && uid == os.Getuid()
}

// socketUID finds the owner of the socket whose local address is src and
// remote address is dst.
func socketUID(src, dst netip.AddrPort) (int, error) {
	want := procAddr(src) + " " + procAddr(dst)
	files := []string{"/proc/net/tcp6", "/proc/net/tcp"}
	if src.Addr().Unmap().Is4() && !src.Addr().Is4In6() {
		files = []string{"/proc/net/tcp", "/proc/net/tcp6"}
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			// "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid ..."
			i := strings.Index(line, ": ")
			if i < 0 || !strings.HasPrefix(line[i+2:], want) && !strings.HasPrefix(line[i+2:], procAddr6(src)+" "+procAddr6(dst)) {
				continue
			}
			fields := strings.Fields(line[i+2:])
			f.Close()
			if len(fields) < 6 {
				return 0, fmt.Errorf("short line in %s", name)
			}
			return strconv.Atoi(fields[5])
		}
		f.Close()
	}
	return 0, fmt.Errorf("socket %s -> %s not found", src, dst)
}

// procAddr formats an address as /proc/net/tcp does: the IPv4 address as a
// little-endian hex word, then the port in hex.
func procAddr(ap netip.AddrPort) string {
	a := ap.Addr().Unmap()
	if !a.Is4() {
		return procAddr6(ap)
	}
	b := a.As4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", b[3], b[2], b[1], b[0], ap.Port())
}

// procAddr6 formats an address as /proc/net/tcp6 does: four little-endian
// 32-bit words (IPv4 shows as ::ffff:a.b.c.d).
func procAddr6(ap netip.AddrPort) string {
	b := ap.Addr().As16()
	var sb strings.Builder
	for w := 0; w < 4; w++ {
		word := []byte{b[w*4+3], b[w*4+2], b[w*4+1], b[w*4]}
		sb.WriteString(strings.ToUpper(hex.EncodeToString(word)))
	}
	return fmt.Sprintf("%s:%04X", sb.String(), ap.Port())
}
