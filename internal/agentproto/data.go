package agentproto

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The data port (Kubernetes transport). The backend asks the agent for the
// data token with the SSH global request DataTokenRequest (authenticated by
// the per-session SSH key; the token is never in the pod spec), opens a
// port-forward stream to DataPort, and sends
//
//	DataMagic (8 bytes) | token (TokenSize bytes)
//
// The agent answers with one status byte (0 = ok, else refused), a u16
// length and a text: its Describe() on success, the reason otherwise. Then
// the stream carries an internal/mux session, whose stream requests are the
// "host:port" to dial from the pod; a refusal's message is DialRefusal.
const (
	DataTokenRequest = "data-token@tether.dev"
	DataMagic        = "TETHERD1"
	TokenSize        = 32
)

// TokenReply is the payload of the reply to DataTokenRequest (SSH wire
// encoding, golang.org/x/crypto/ssh Marshal).
type TokenReply struct {
	Token    string // TokenSize random bytes
	Version  string // the agent's Describe()
	Hostname string // the pod name
}

// WriteHello sends the client's half of the handshake.
func WriteHello(w io.Writer, token []byte) error {
	_, err := w.Write(append([]byte(DataMagic), token...))
	return err
}

// ReadHello reads the client's half and checks its token (constant time).
func ReadHello(r io.Reader, token []byte) error {
	b := make([]byte, len(DataMagic)+TokenSize)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("data handshake: %w", err)
	}
	if !bytes.Equal(b[:len(DataMagic)], []byte(DataMagic)) {
		return errors.New("data handshake: not a tether data stream")
	}
	if len(token) != TokenSize || subtle.ConstantTimeCompare(b[len(DataMagic):], token) != 1 {
		return errors.New("data handshake: wrong token")
	}
	return nil
}

// WriteAnswer sends the agent's answer: ok with text = its description, or
// a refusal with the reason.
func WriteAnswer(w io.Writer, ok bool, text string) error {
	if len(text) > 1024 {
		text = text[:1024]
	}
	b := make([]byte, 3, 3+len(text))
	if !ok {
		b[0] = 1
	}
	binary.BigEndian.PutUint16(b[1:], uint16(len(text)))
	_, err := w.Write(append(b, text...))
	return err
}

// ErrRefused wraps the agent's refusal of a data handshake.
var ErrRefused = errors.New("the agent refused the data stream")

// ReadAnswer reads the agent's answer: its description, or ErrRefused with
// the reason.
func ReadAnswer(r io.Reader) (string, error) {
	var h [3]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", fmt.Errorf("data handshake: %w", err)
	}
	text := make([]byte, binary.BigEndian.Uint16(h[1:]))
	if _, err := io.ReadFull(r, text); err != nil {
		return "", fmt.Errorf("data handshake: %w", err)
	}
	if h[0] != 0 {
		return "", fmt.Errorf("%w: %s", ErrRefused, text)
	}
	return string(text), nil
}

// Dial failure reasons in a refused mux stream: the first byte of the
// refusal message, then the text (the dial error on the pod).
const (
	ReasonOther       = 'o'
	ReasonRefused     = 'r'
	ReasonNoSuchHost  = 'n'
	ReasonUnreachable = 'u'
)

// DialRefusal encodes a dial failure.
func DialRefusal(reason byte, text string) []byte { return append([]byte{reason}, text...) }

// ParseDialRefusal decodes a dial failure.
func ParseDialRefusal(msg []byte) (reason byte, text string) {
	if len(msg) == 0 {
		return ReasonOther, "refused"
	}
	return msg[0], strings.TrimSpace(string(msg[1:]))
}
