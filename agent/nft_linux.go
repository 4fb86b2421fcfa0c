package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// sidecarRules are the parameters of the sidecar's redirection.
type sidecarRules struct {
	TCPPort, DNSPort uint16
	Mark             uint32
}

// sidecarChainPriority runs the sidecar's nat chain just before the standard
// dstnat priority (-100), so that it decides before Docker's own nat OUTPUT
// rules (which send 127.0.0.11:53 to the embedded resolver); the sidecar's
// marked queries fall through to them.
var sidecarChainPriority = nftables.ChainPriorityRef(-110)

// sidecarExprs returns the rules of the sidecar's chain, in order:
//
//	meta mark MARK return
//	meta l4proto udp th dport 53 redirect to :DNS
//	meta l4proto tcp th dport 53 redirect to :DNS
//	meta oifname "lo" return
//	ip daddr 127.0.0.0/8 return
//	ip6 daddr ::1 return
//	meta l4proto tcp redirect to :TCP
//
// DNS comes before the loopback exception: queries to a loopback resolver
// (Docker's 127.0.0.11) are the app's queries too.
func sidecarExprs(r sidecarRules) [][]expr.Any {
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	l4 := func(proto byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		}
	}
	dport := func(p uint16) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
		}
	}
	redirect := func(p uint16) []expr.Any {
		return []expr.Any{
			&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
			&expr.Redir{RegisterProtoMin: 1},
		}
	}
	nfproto := func(p byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
		}
	}
	cat := func(parts ...[]expr.Any) []expr.Any {
		var out []expr.Any
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	lo := make([]byte, 16) // IFNAMSIZ, NUL padded
	copy(lo, "lo")
	return [][]expr.Any{
		{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(r.Mark)},
			ret,
		},
		cat(l4(unix.IPPROTO_UDP), dport(53), redirect(r.DNSPort)),
		cat(l4(unix.IPPROTO_TCP), dport(53), redirect(r.DNSPort)),
		{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lo},
			ret,
		},
		cat(nfproto(unix.NFPROTO_IPV4), []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 0}},
			ret,
		}),
		cat(nfproto(unix.NFPROTO_IPV6), []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net.IPv6loopback},
			ret,
		}),
		cat(l4(unix.IPPROTO_TCP), redirect(r.TCPPort)),
	}
}

var sidecarTable = &nftables.Table{Family: nftables.TableFamilyINet, Name: SidecarTable}

// installSidecarRules creates the table "tether" (family inet) with a nat
// output chain in the current network namespace, replacing a leftover one,
// in one netlink transaction.
func installSidecarRules(r sidecarRules) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if t, err := c.ListTableOfFamily(SidecarTable, nftables.TableFamilyINet); err == nil && t != nil {
		c.DelTable(sidecarTable)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("removing the leftover table: %w", err)
		}
	}
	t := c.AddTable(sidecarTable)
	ch := c.AddChain(&nftables.Chain{
		Name:     "output",
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookOutput,
		Priority: sidecarChainPriority,
	})
	for _, e := range sidecarExprs(r) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e})
	}
	return c.Flush()
}

// removeSidecarRules deletes the sidecar's table.
func removeSidecarRules() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	c.DelTable(sidecarTable)
	err = c.Flush()
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// markControl sets SO_MARK on a socket before it connects.
func markControl(mark uint32) func(network, address string, rc syscall.RawConn) error {
	return func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("SO_MARK: %w", serr)
		}
		return nil
	}
}

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h.
const ip6tSOOriginalDst = 80

// originalDst returns the destination a redirected connection was addressed
// to, from conntrack (SO_ORIGINAL_DST, or IP6T_SO_ORIGINAL_DST for IPv6).
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	local, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var (
		ap   netip.AddrPort
		serr error
	)
	v4 := local.IP.To4() != nil
	err = rc.Control(func(fd uintptr) {
		if v4 {
			var sa unix.RawSockaddrInet4
			l := uint32(unsafe.Sizeof(sa))
			_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_IP, unix.SO_ORIGINAL_DST,
				uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)), 0)
			if e != 0 {
				serr = e
				return
			}
			p := (*[2]byte)(unsafe.Pointer(&sa.Port))
			ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
			return
		}
		var sa unix.RawSockaddrInet6
		l := uint32(unsafe.Sizeof(sa))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_IPV6, ip6tSOOriginalDst,
			uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			serr = e
			return
		}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: %w", serr)
	}
	return ap, nil
}
