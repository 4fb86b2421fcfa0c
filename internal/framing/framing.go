// Package framing reads and writes Content-Length framed messages, the base
// protocol of LSP (JSON-RPC with the IDE) and of DAP: a header block
// ("Content-Length: N", other headers ignored, a blank line) and N bytes of
// body. The reader is hardened for peers that cannot be trusted yet: bounded
// headers, a size limit, and bodies that are never allocated from the length
// they announce.
package framing

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
)

// Defaults of Options.
const (
	DefaultMaxBody        = 64 << 20
	DefaultMaxHeaderBytes = 8 << 10
)

// ErrBadHeader is wrapped by the errors of a header block that cannot be
// parsed: the next message cannot be found, so the stream cannot go on.
var ErrBadHeader = errors.New("invalid message header")

// TooLargeError is the error of a frame whose body is over the limit.
type TooLargeError struct {
	Length, Limit int64
	// Skipped says that the body was read and dropped (Options.SkipTooLarge):
	// the next ReadFrame reads the next frame. Otherwise the body is still
	// unread and the stream cannot go on.
	Skipped bool
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("message of %d bytes is over the limit of %d bytes", e.Length, e.Limit)
}

// Options configures a Reader. The zero value is strict: no blank lines
// before a header block, no empty bodies, DefaultMaxBody, and a body over
// it ends the stream.
type Options struct {
	// MaxBody bounds a body; 0 means DefaultMaxBody. Reader.SetMaxBody
	// changes it later.
	MaxBody int64
	// SkipTooLarge reads past a body over MaxBody (without keeping it), so
	// that the stream goes on after the *TooLargeError.
	SkipTooLarge bool
	// MaxHeaderBytes bounds a header block, line ends (and blank lines
	// before it) included; 0 means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxHeaderLine bounds one header line, its line end included; 0 means
	// MaxHeaderBytes. A small bound tells a peer that speaks something else
	// (e.g. HTTP) apart quickly.
	MaxHeaderLine int
	// SkipBlankLines tolerates blank lines before a header block (between
	// messages), as some debug adapters send them.
	SkipBlankLines bool
	// AllowEmpty accepts "Content-Length: 0".
	AllowEmpty bool
}

// Reader reads frames from one stream. ReadFrame must not be called
// concurrently; SetMaxBody may be called at any time.
type Reader struct {
	br        *bufio.Reader
	opts      Options
	maxHeader int
	maxLine   int
	maxBody   atomic.Int64
}

// NewReader returns a Reader on r (buffered: it may read ahead of the frame
// it returns).
func NewReader(r io.Reader, opts Options) *Reader {
	rd := &Reader{br: bufio.NewReaderSize(r, 16<<10), opts: opts, maxHeader: opts.MaxHeaderBytes, maxLine: opts.MaxHeaderLine}
	if rd.maxHeader <= 0 {
		rd.maxHeader = DefaultMaxHeaderBytes
	}
	if rd.maxLine <= 0 {
		rd.maxLine = rd.maxHeader
	}
	rd.SetMaxBody(opts.MaxBody)
	return rd
}

// SetMaxBody changes the size limit for the frames read from now on; 0
// means DefaultMaxBody.
func (r *Reader) SetMaxBody(n int64) {
	if n <= 0 {
		n = DefaultMaxBody
	}
	r.maxBody.Store(n)
}

// ReadFrame reads one frame and returns its body and the number of bytes it
// took on the stream (header included). The body is read into a buffer that
// grows with the bytes that arrive, so that a peer announcing a large body
// and sending nothing costs nothing. Errors: io.EOF when the stream ends
// between frames, io.ErrUnexpectedEOF inside one, ErrBadHeader (wrapped),
// *TooLargeError, or the underlying reader's error.
func (r *Reader) ReadFrame() (body []byte, n int64, err error) {
	length, hn, err := r.readHeader()
	if err != nil {
		return nil, 0, err
	}
	n = int64(hn) + length
	if limit := r.maxBody.Load(); length > limit {
		tl := &TooLargeError{Length: length, Limit: limit}
		if !r.opts.SkipTooLarge {
			return nil, 0, tl
		}
		if _, err := io.CopyN(io.Discard, r.br, length); err != nil {
			return nil, 0, unexpected(err)
		}
		tl.Skipped = true
		return nil, n, tl
	}
	var buf bytes.Buffer
	buf.Grow(int(min(length, 64<<10)))
	if _, err := io.CopyN(&buf, r.br, length); err != nil {
		return nil, 0, unexpected(err)
	}
	return buf.Bytes(), n, nil
}

// unexpected turns the end of the stream inside a frame into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readHeader reads one header block and returns the Content-Length and the
// bytes consumed.
func (r *Reader) readHeader() (length int64, consumed int, err error) {
	length = -1
	lines := 0
	for {
		line, n, err := r.readLine()
		consumed += n
		if err != nil {
			if errors.Is(err, io.EOF) && lines == 0 && n == 0 {
				return 0, 0, io.EOF
			}
			return 0, 0, unexpected(err)
		}
		if consumed > r.maxHeader {
			return 0, 0, fmt.Errorf("%w: header block of more than %d bytes", ErrBadHeader, r.maxHeader)
		}
		if len(line) == 0 {
			if lines == 0 && r.opts.SkipBlankLines {
				continue
			}
			if length < 0 {
				return 0, 0, fmt.Errorf("%w: no Content-Length", ErrBadHeader)
			}
			return length, consumed, nil
		}
		lines++
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, 0, fmt.Errorf("%w: header %q", ErrBadHeader, clip(line))
		}
		if bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Length")) {
			v, err := strconv.ParseInt(string(bytes.TrimSpace(value)), 10, 64)
			if err != nil || v < 0 || v == 0 && !r.opts.AllowEmpty {
				return 0, 0, fmt.Errorf("%w: bad Content-Length %q", ErrBadHeader, clip(value))
			}
			length = v
		}
	}
}

// readLine reads one header line of at most maxLine bytes and returns it
// without its line end (valid until the next read), and the bytes consumed.
func (r *Reader) readLine() (line []byte, n int, err error) {
	var long []byte
	for {
		frag, err := r.br.ReadSlice('\n')
		n += len(frag)
		if n > r.maxLine {
			return nil, n, fmt.Errorf("%w: header line of more than %d bytes: %q", ErrBadHeader, r.maxLine, clip(append(long, frag...)))
		}
		if err == bufio.ErrBufferFull {
			long = append(long, frag...)
			continue
		}
		if err != nil {
			return nil, n, err
		}
		if long != nil {
			frag = append(long, frag...)
		}
		return bytes.TrimRight(frag, "\r\n"), n, nil
	}
}

// clip shortens what a peer sent for an error message.
func clip(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}

// Writer writes frames to one stream; it is safe for concurrent use: each
// frame goes out in one Write, under a mutex, so frames never interleave.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteFrame writes body as one frame, whatever it holds.
func (w *Writer) WriteFrame(body []byte) error {
	msg := make([]byte, 0, len(body)+32)
	msg = append(msg, "Content-Length: "...)
	msg = strconv.AppendInt(msg, int64(len(body)), 10)
	msg = append(msg, "\r\n\r\n"...)
	msg = append(msg, body...)
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.w.Write(msg)
	return err
}
