package agent

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// OpenSSH's sshd answers a failed direct-tcpip connect with "connect failed"
// and the strerror(3) or gai_strerror(3) text; Tether's client (and people)
// read those texts, so the agent uses the same ones.
const (
	msgRefused     = "Connection refused"
	msgNoSuchHost  = "Name or service not known"
	msgDNSTemp     = "Temporary failure in name resolution"
	msgNoRoute     = "No route to host"
	msgNetUnreach  = "Network is unreachable"
	msgTimedOut    = "Connection timed out"
	msgProhibited  = "administratively prohibited"
	msgConnectFail = "connect failed"
)

// rejection maps a dial error to a channel open failure.
func rejection(err error) (ssh.RejectionReason, string) {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason, re.Message
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return ssh.ConnectionFailed, msgNoSuchHost
		}
		if dnsErr.IsTimeout || dnsErr.IsTemporary {
			return ssh.ConnectionFailed, msgDNSTemp
		}
		return ssh.ConnectionFailed, msgNoSuchHost
	}
	var addrErr *net.AddrError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ssh.ConnectionFailed, msgRefused
	case errors.Is(err, syscall.EHOSTUNREACH):
		return ssh.ConnectionFailed, msgNoRoute
	case errors.Is(err, syscall.ENETUNREACH):
		return ssh.ConnectionFailed, msgNetUnreach
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded):
		return ssh.ConnectionFailed, msgTimedOut
	case errors.As(err, &addrErr):
		return ssh.ConnectionFailed, msgNoSuchHost
	}
	// Innermost message, without Go's "dial tcp ...:" prefixes.
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	return ssh.ConnectionFailed, msgConnectFail + ": " + err.Error()
}
