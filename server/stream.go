package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.lsp.dev/jsonrpc2"
)

// DefaultMaxMessageBytes is the largest message a client may send.
const DefaultMaxMessageBytes = 64 << 20

// maxHeaderBytes bounds the header block of one message.
const maxHeaderBytes = 8 << 10

// errBadHeader means the LSP framing itself is broken: there is no way to
// find the next message, so the connection ends.
var errBadHeader = errors.New("invalid message header")

// stream is the LSP Content-Length framing with the robustness an IDE
// backend needs: a body that is not JSON, or not a JSON-RPC message, is
// answered with -32700 / -32600 and the connection goes on; a body over the
// size limit is skipped without being buffered and answered with -32600.
// Writes use the library's header stream.
type stream struct {
	r     *bufio.Reader
	w     jsonrpc2.Stream
	max   int
	onEOF func() // the client went away: cancel its work
}

func newStream(rwc io.ReadWriteCloser, max int, onEOF func()) *stream {
	return &stream{r: bufio.NewReaderSize(rwc, 64<<10), w: jsonrpc2.NewHeaderStream(rwc), max: max, onEOF: onEOF}
}

func (s *stream) Read(ctx context.Context) (jsonrpc2.Message, int64, error) {
	for {
		length, hn, err := readHeader(s.r)
		if err != nil {
			if s.onEOF != nil {
				s.onEOF()
			}
			return nil, 0, err
		}
		if length > s.max {
			if _, err := io.CopyN(io.Discard, s.r, int64(length)); err != nil {
				return nil, 0, io.ErrUnexpectedEOF
			}
			s.reject(ctx, jsonrpc2.ID{}, jsonrpc2.InvalidRequest,
				fmt.Sprintf("message of %d bytes is over the limit of %d bytes; it was skipped", length, s.max))
			continue
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(s.r, body); err != nil {
			if s.onEOF != nil {
				s.onEOF()
			}
			return nil, 0, io.ErrUnexpectedEOF
		}
		msg, err := jsonrpc2.DecodeMessage(body)
		if err == nil {
			return msg, int64(hn + length), nil
		}
		if !json.Valid(body) {
			s.reject(ctx, jsonrpc2.ID{}, jsonrpc2.ParseError, "message is not valid JSON: "+jsonError(body))
			continue
		}
		if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '[' {
			s.reject(ctx, jsonrpc2.ID{}, jsonrpc2.InvalidRequest, "batch messages are not supported: send one message per frame")
			continue
		}
		s.reject(ctx, requestID(body), jsonrpc2.InvalidRequest, "not a JSON-RPC 2.0 message: "+err.Error())
	}
}

func (s *stream) reject(ctx context.Context, id jsonrpc2.ID, code jsonrpc2.Code, msg string) {
	_, _ = s.w.Write(ctx, jsonrpc2.NewResponse(id, nil, jsonrpc2.NewError(code, msg)))
}

func (s *stream) Write(ctx context.Context, msg jsonrpc2.Message) (int64, error) {
	return s.w.Write(ctx, msg)
}

func (s *stream) Close() error { return s.w.Close() }

// jsonError describes where a body stops being JSON.
func jsonError(body []byte) string {
	var v any
	err := json.Unmarshal(body, &v)
	if err == nil {
		return "unexpected content"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// requestID recovers the id of an invalid request so the error can be
// matched to it.
func requestID(body []byte) jsonrpc2.ID {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(body, &m) != nil {
		return jsonrpc2.ID{}
	}
	id, _ := parseID(m.ID)
	return id
}

func parseID(raw json.RawMessage) (jsonrpc2.ID, bool) {
	var n int64
	if json.Unmarshal(raw, &n) == nil {
		return jsonrpc2.NewNumberID(n), true
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		return jsonrpc2.NewStringID(str), true
	}
	return jsonrpc2.ID{}, false
}

// readHeader reads one LSP header block and returns the Content-Length.
func readHeader(r *bufio.Reader) (length, consumed int, err error) {
	length = -1
	for {
		line, err := r.ReadSlice('\n')
		consumed += len(line)
		if err != nil {
			if err == io.EOF && consumed == 0 {
				return 0, 0, io.EOF
			}
			if err == bufio.ErrBufferFull {
				return 0, 0, fmt.Errorf("%w: header line too long", errBadHeader)
			}
			return 0, 0, io.ErrUnexpectedEOF
		}
		if consumed > maxHeaderBytes {
			return 0, 0, fmt.Errorf("%w: header block too long", errBadHeader)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if length < 0 {
				return 0, 0, fmt.Errorf("%w: no Content-Length", errBadHeader)
			}
			return length, consumed, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, 0, fmt.Errorf("%w: %q", errBadHeader, line)
		}
		if strings.EqualFold(string(bytes.TrimSpace(name)), "Content-Length") {
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil || n <= 0 {
				return 0, 0, fmt.Errorf("%w: Content-Length %q", errBadHeader, value)
			}
			length = n
		}
	}
}
