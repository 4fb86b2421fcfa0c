//go:build !linux

package peercred

import (
	"net"
	"testing"
)

func checkTCPLookups(*testing.T, net.Conn) {}
