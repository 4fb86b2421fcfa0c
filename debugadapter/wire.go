package debugadapter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/tether-dev/tether/internal/framing"
)

// MaxMessageBytes bounds one DAP message body.
const MaxMessageBytes = 64 << 20

// ErrNotDAP is wrapped by read errors of a peer that does not speak the
// DAP base protocol (e.g. an HTTP server).
var ErrNotDAP = errors.New("not a DAP peer")

// newReader reads DAP messages from r. It is lenient where debug adapters
// are (blank lines between messages, empty bodies) and quick to tell a peer
// that is not one (header lines of at most 1 KiB); a body over
// MaxMessageBytes ends the stream.
func newReader(r io.Reader) *framing.Reader {
	return framing.NewReader(r, framing.Options{MaxBody: MaxMessageBytes, MaxHeaderLine: 1 << 10,
		MaxHeaderBytes: 16 << 10, SkipBlankLines: true, AllowEmpty: true})
}

// readMessage reads one DAP message and returns its body untouched. Header
// names are case-insensitive; other headers are ignored. Broken framing
// wraps ErrNotDAP.
func readMessage(r *framing.Reader) ([]byte, error) {
	body, _, err := r.ReadFrame()
	if errors.Is(err, framing.ErrBadHeader) {
		return nil, fmt.Errorf("%w: %w", ErrNotDAP, err)
	}
	return body, err
}

// writer sends framed messages; one send path under a mutex. With
// renumber, every message gets the next seq of this side (the bridge's own
// messages and the remote's share one sequence towards the IDE).
type writer struct {
	mu       sync.Mutex
	w        *framing.Writer
	renumber bool
	seq      int
}

func newWriter(w io.Writer, renumber bool) *writer {
	return &writer{w: framing.NewWriter(w), renumber: renumber}
}

func (w *writer) send(body []byte) error {
	_, err := w.sendSeq(body)
	return err
}

// sendSeq sends body and returns the seq it carries.
func (w *writer) sendSeq(body []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seq := 0
	if w.renumber {
		w.seq++
		seq = w.seq
		body, _ = setTopLevelInt(body, "seq", seq)
	}
	return seq, w.w.WriteFrame(body)
}

// peek is the part of a message the bridge looks at to route it.
type peek struct {
	Seq        int    `json:"seq"`
	Type       string `json:"type"`
	Command    string `json:"command"`
	Event      string `json:"event"`
	RequestSeq int    `json:"request_seq"`
	Success    bool   `json:"success"`
}

func peekMessage(body []byte) (peek, error) {
	var p peek
	if err := json.Unmarshal(body, &p); err != nil {
		return p, fmt.Errorf("%w: message is not JSON: %v", ErrNotDAP, err)
	}
	switch p.Type {
	case "request", "response", "event":
	default:
		return p, fmt.Errorf("%w: message type %q", ErrNotDAP, p.Type)
	}
	return p, nil
}

// setTopLevelInt replaces the value of a top-level key of a JSON object with
// n, leaving every other byte as it was. It reports whether the key exists.
func setTopLevelInt(body []byte, key string, n int) ([]byte, bool) {
	start, end, ok := topLevelValue(body, key)
	if !ok {
		return body, false
	}
	out := make([]byte, 0, len(body)+8)
	out = append(out, body[:start]...)
	out = strconv.AppendInt(out, int64(n), 10)
	return append(out, body[end:]...), true
}

// topLevelValue finds the byte span of the value of key in a JSON object.
func topLevelValue(body []byte, key string) (start, end int, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, 0, false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return 0, 0, false
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0, 0, false
		}
		if k == key {
			end := int(dec.InputOffset())
			return end - len(v), end, true
		}
	}
	return 0, 0, false
}
