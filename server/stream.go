package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode/utf8"

	"go.lsp.dev/jsonrpc2"

	"github.com/tether-dev/tether/internal/framing"
)

// DefaultMaxMessageBytes is the largest message a client may send.
const DefaultMaxMessageBytes = 64 << 20

// DefaultMaxUninitializedBytes is the largest message a client may send
// before initialize succeeded (for a socket client: before its token was
// checked). initialize itself is a few hundred bytes.
const DefaultMaxUninitializedBytes = 1 << 20

// stream is the LSP Content-Length framing (package framing) with the
// robustness an IDE backend needs: a body that is not JSON, or not a
// JSON-RPC message, is answered with -32700 / -32600 and the connection goes
// on; a body over the size limit is skipped without being buffered and
// answered with -32600. A header block that cannot be parsed ends the
// connection. Writes use the library's header stream.
//
// A body is read into a buffer that grows as its bytes arrive, never
// allocated from the announced Content-Length, and the limit is small
// (DefaultMaxUninitializedBytes) until the session raises it after
// initialize: a client that has not shown its token cannot make the
// backend allocate more than that.
type stream struct {
	r     *framing.Reader
	w     jsonrpc2.Stream
	onEOF func() // the client went away: cancel its work
}

func newStream(rwc io.ReadWriteCloser, max int, onEOF func()) *stream {
	return &stream{r: framing.NewReader(rwc, framing.Options{MaxBody: int64(max), SkipTooLarge: true}),
		w: jsonrpc2.NewHeaderStream(rwc), onEOF: onEOF}
}

// setMax changes the size limit for the messages read from now on.
func (s *stream) setMax(max int) { s.r.SetMaxBody(int64(max)) }

func (s *stream) Read(ctx context.Context) (jsonrpc2.Message, int64, error) {
	for {
		body, n, err := s.r.ReadFrame()
		var tooLarge *framing.TooLargeError
		if errors.As(err, &tooLarge) && tooLarge.Skipped {
			s.reject(ctx, jsonrpc2.ID{}, jsonrpc2.InvalidRequest, tooLarge.Error()+"; it was skipped")
			continue
		}
		if err != nil {
			if s.onEOF != nil {
				s.onEOF()
			}
			return nil, 0, err
		}
		if !utf8.Valid(body) {
			// JSON is UTF-8: replace what is not, so that a method name or
			// id echoed in a reply is valid JSON (encoding/json does the
			// same to the strings it decodes).
			body = bytes.ToValidUTF8(body, []byte("\uFFFD"))
		}
		msg, err := jsonrpc2.DecodeMessage(body)
		if err == nil {
			return msg, n, nil
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
	_, _ = s.w.Write(ctx, jsonrpc2.NewResponse(id, nil, jsonrpc2.NewError(code, validUTF8(msg))))
}

// validUTF8 replaces invalid UTF-8 (e.g. from a method name a client sent)
// so that the text can be put in a JSON reply.
func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

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
