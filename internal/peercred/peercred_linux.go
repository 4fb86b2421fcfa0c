package peercred

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func get(c net.Conn) (Cred, error) {
	if _, ok := c.LocalAddr().(*net.UnixAddr); ok {
		return unixPeer(c)
	}
	remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || !remote.IP.IsLoopback() {
		return Cred{}, ErrNotLocal
	}
	uid, err := tcpUID(remote, local)
	if err != nil {
		return Cred{}, err
	}
	return Cred{UID: uid}, nil
}

// unixPeer asks the kernel for the credentials the peer had when it
// connected (SO_PEERCRED).
func unixPeer(c net.Conn) (Cred, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Cred{}, ErrNotLocal
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var uc *unix.Ucred
	var uerr error
	if err := rc.Control(func(fd uintptr) {
		uc, uerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, err
	}
	if uerr != nil {
		return Cred{}, fmt.Errorf("peercred: SO_PEERCRED: %w", uerr)
	}
	return Cred{UID: int(uc.Uid), PID: int(uc.Pid)}, nil
}

// tcpUID finds the owner of the socket remote->local (the peer's end of
// an accepted loopback connection). It asks the kernel for that one
// socket (NETLINK_SOCK_DIAG exact lookup, ~tens of µs) and falls back to
// scanning /proc/thread-self/net/tcp{,6}, which costs milliseconds on a
// machine with thousands of sockets. Both run on a locked thread and see
// that thread's network namespace: /proc/self/net shows the main thread's,
// which a process that moved its main thread elsewhere (the namespace fake
// cloud of the tests can) would get wrong.
func tcpUID(remote, local *net.TCPAddr) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	uid, err := diagUID(remote, local)
	if err != nil {
		uid, err = procUID(remote, local)
	}
	return uid, err
}

// diagUID looks up the socket src->dst with sock_diag (AF_INET, then
// AF_INET6 with v4-mapped addresses for dual-stack sockets).
func diagUID(src, dst *net.TCPAddr) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_INET_DIAG)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 1}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	families := []uint8{unix.AF_INET6}
	if src.IP.To4() != nil && dst.IP.To4() != nil {
		families = []uint8{unix.AF_INET, unix.AF_INET6}
	}
	for _, fam := range families {
		uid, err := diagQuery(fd, fam, src, dst)
		if err == nil {
			return uid, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return 0, err
		}
	}
	return 0, ErrNotFound
}

func diagQuery(fd int, fam uint8, src, dst *net.TCPAddr) (int, error) {
	const hdr, req = 16, 56
	b := make([]byte, hdr+req)
	binary.LittleEndian.PutUint32(b[0:], hdr+req)
	binary.LittleEndian.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.LittleEndian.PutUint16(b[6:], unix.NLM_F_REQUEST)
	binary.LittleEndian.PutUint32(b[8:], 1)
	r := b[hdr:]
	r[0] = fam
	r[1] = unix.IPPROTO_TCP
	binary.LittleEndian.PutUint32(r[4:], 0xffffffff) // all states
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], uint16(src.Port))
	binary.BigEndian.PutUint16(id[2:], uint16(dst.Port))
	if fam == unix.AF_INET {
		copy(id[4:8], src.IP.To4())
		copy(id[20:24], dst.IP.To4())
	} else {
		copy(id[4:20], src.IP.To16())
		copy(id[20:36], dst.IP.To16())
	}
	binary.LittleEndian.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	binary.LittleEndian.PutUint32(id[44:], 0xffffffff)
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, err
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, err
	}
	if n < hdr+4 {
		return 0, errors.New("short sock_diag answer")
	}
	switch typ := binary.LittleEndian.Uint16(buf[4:]); typ {
	case unix.NLMSG_ERROR:
		if errno := int32(binary.LittleEndian.Uint32(buf[hdr:])); errno == -int32(unix.ENOENT) {
			return 0, ErrNotFound
		} else {
			return 0, fmt.Errorf("sock_diag: %v", unix.Errno(-errno))
		}
	case unix.SOCK_DIAG_BY_FAMILY:
		// inet_diag_msg: family, state, timer, retrans, sockid (48), expires, rqueue, wqueue, uid
		if n < hdr+68 {
			return 0, errors.New("short inet_diag_msg")
		}
		return int(binary.LittleEndian.Uint32(buf[hdr+64:])), nil
	default:
		return 0, fmt.Errorf("sock_diag: message type %d", typ)
	}
}

// procUID finds the owner of the socket src->dst in /proc/thread-self/net.
func procUID(src, dst *net.TCPAddr) (int, error) {
	dir := "/proc/thread-self/net/"
	if _, err := os.Stat(dir); err != nil {
		dir = "/proc/self/net/"
	}
	want4 := procAddr4(src) + " " + procAddr4(dst)
	want6 := procAddr6(src) + " " + procAddr6(dst)
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(dir + name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			i := strings.Index(line, ": ")
			if i < 0 {
				continue
			}
			rest := line[i+2:]
			if !strings.HasPrefix(rest, want4) && !strings.HasPrefix(rest, want6) {
				continue
			}
			f.Close()
			fields := strings.Fields(rest)
			if len(fields) < 6 {
				return 0, errors.New("short line")
			}
			return strconv.Atoi(fields[5])
		}
		f.Close()
	}
	return 0, ErrNotFound
}

func procAddr4(a *net.TCPAddr) string {
	ip := a.IP.To4()
	if ip == nil {
		return "-"
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}

func procAddr6(a *net.TCPAddr) string {
	ip := a.IP.To16()
	var sb strings.Builder
	for w := 0; w < 4; w++ {
		fmt.Fprintf(&sb, "%02X%02X%02X%02X", ip[w*4+3], ip[w*4+2], ip[w*4+1], ip[w*4])
	}
	return fmt.Sprintf("%s:%04X", sb.String(), a.Port)
}
