package debugadapter

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// MaxMessageBytes bounds one DAP message body.
const MaxMessageBytes = 64 << 20

const maxHeaderLine = 1 << 10

// ErrNotDAP is wrapped by read errors of a peer that does not speak the
// DAP base protocol (e.g. an HTTP server).
var ErrNotDAP = errors.New("not a DAP peer")

// readMessage reads one DAP message (Content-Length framed) and returns its
// body untouched. Header names are case-insensitive; other headers are
// ignored.
func readMessage(r *bufio.Reader) ([]byte, error) {
	length := -1
	lines := 0
	for {
		line, err := readLine(r)
		if err != nil {
			if lines > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if line == "" {
			if lines == 0 {
				continue // tolerate stray blank lines between messages
			}
			break
		}
		lines++
		name, value, ok := strings.Cut(line, ":")
		if !ok || lines > 16 {
			return nil, fmt.Errorf("%w: header %q", ErrNotDAP, clip(line))
		}
		if strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			n, err := strconv.Atoi(strings.TrimSpace(value))
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%w: bad Content-Length %q", ErrNotDAP, clip(value))
			}
			if n > MaxMessageBytes {
				return nil, fmt.Errorf("message of %d bytes is over the %d byte limit", n, MaxMessageBytes)
			}
			length = n
		}
	}
	if length < 0 {
		return nil, fmt.Errorf("%w: no Content-Length header", ErrNotDAP)
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// readLine reads a CRLF (or LF) terminated header line of bounded length.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > maxHeaderLine {
			return "", fmt.Errorf("%w: header line of more than %d bytes: %q", ErrNotDAP, maxHeaderLine, clip(string(b)))
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// writer sends framed messages; one send path under a mutex. With
// renumber, every message gets the next seq of this side (the bridge's own
// messages and the remote's share one sequence towards the IDE).
type writer struct {
	mu       sync.Mutex
	w        io.Writer
	renumber bool
	seq      int
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
	msg := make([]byte, 0, len(body)+32)
	msg = fmt.Appendf(msg, "Content-Length: %d\r\n\r\n", len(body))
	msg = append(msg, body...)
	_, err := w.w.Write(msg)
	return seq, err
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
