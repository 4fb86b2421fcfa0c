//go:build !linux

package agent

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

type sidecarRules struct {
	TCPPort, DNSPort uint16
	Mark             uint32
}

var errSidecarLinux = errors.New("the sidecar runs on Linux only")

func installSidecarRules(sidecarRules) error { return errSidecarLinux }

func removeSidecarRules() error { return nil }

func markControl(uint32) func(network, address string, rc syscall.RawConn) error { return nil }

func originalDst(*net.TCPConn) (netip.AddrPort, error) { return netip.AddrPort{}, errSidecarLinux }
