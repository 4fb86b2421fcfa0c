// Package socks5 is the SOCKS5 wire protocol (RFC 1928) with
// username/password authentication (RFC 1929), CONNECT only: the server
// side's messages for Tether's local proxy, and a client that connects
// through a SOCKS5 server. Policy (who may connect where) is the caller's.
package socks5

import (
	"errors"
	"fmt"
)

// Version is the protocol version byte of every SOCKS5 message.
const Version = 0x05

// Authentication methods (RFC 1928 section 3).
const (
	MethodNone         byte = 0x00
	MethodUserPass     byte = 0x02
	MethodNoAcceptable byte = 0xFF
)

// CmdConnect is the only command served.
const CmdConnect byte = 0x01

// Address types.
const (
	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// RFC 1929 sub-negotiation.
const (
	authVersion = 0x01
	authSuccess = 0x00
	authFailure = 0x01
)

// BufSize is the buffer the server side reads a client message into: the
// largest is the RFC 1929 request (2 + 255 + 1 + 255).
const BufSize = 2 + 255 + 1 + 255

// Reply is the reply code of a request (RFC 1928 section 6).
type Reply byte

const (
	Succeeded           Reply = 0x00
	GeneralFailure      Reply = 0x01
	NotAllowed          Reply = 0x02
	NetworkUnreachable  Reply = 0x03
	HostUnreachable     Reply = 0x04
	ConnectionRefused   Reply = 0x05
	TTLExpired          Reply = 0x06
	CommandNotSupported Reply = 0x07
	AddressNotSupported Reply = 0x08
)

var replyText = [...]string{"succeeded", "general failure", "not allowed", "network unreachable",
	"host unreachable", "connection refused", "TTL expired", "command not supported", "address type not supported"}

func (r Reply) String() string {
	if int(r) < len(replyText) {
		return replyText[r]
	}
	return fmt.Sprintf("reply %d", byte(r))
}

var (
	// ErrVersion: the peer does not speak SOCKS5.
	ErrVersion = errors.New("socks5: not a SOCKS5 peer")
	// ErrNoAcceptableMethod: client and server share no authentication
	// method.
	ErrNoAcceptableMethod = errors.New("socks5: no acceptable authentication method")
	// ErrAuthFailed: the username/password was refused.
	ErrAuthFailed = errors.New("socks5: wrong username or password")
)
