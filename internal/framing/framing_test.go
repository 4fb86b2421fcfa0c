package framing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func frame(body string) string { return fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body) }

// dap is how the debug adapter bridge reads.
var dap = Options{MaxBody: 100, MaxHeaderLine: 1 << 10, MaxHeaderBytes: 16 << 10, SkipBlankLines: true, AllowEmpty: true}

func TestReadFrame(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		in    string
		want  string // body of the first frame
		err   string // or a part of the error
		isErr error  // or the error it wraps
	}{
		{name: "plain", in: frame("{}"), want: "{}"},
		{name: "other headers and case", in: "content-length:2\r\nContent-Type: application/vscode-jsonrpc\r\n\r\n{}", want: "{}"},
		{name: "LF only", in: "Content-Length: 3\n\n[1]", want: "[1]"},
		{name: "last length wins", in: "Content-Length: 9\r\nContent-Length: 2\r\n\r\n{}", want: "{}"},
		{name: "EOF between frames", in: "", isErr: io.EOF},
		{name: "EOF in header", in: "Content-Length: 2\r\n", isErr: io.ErrUnexpectedEOF},
		{name: "EOF in first line", in: "Content-Len", isErr: io.ErrUnexpectedEOF},
		{name: "short body", in: "Content-Length: 5\r\n\r\n{}", isErr: io.ErrUnexpectedEOF},
		{name: "HTTP", in: "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n", err: `header "HTTP/1.1 400 Bad Request"`, isErr: ErrBadHeader},
		{name: "no length", in: "X-Foo: 1\r\n\r\n{}", err: "no Content-Length", isErr: ErrBadHeader},
		{name: "negative length", in: "Content-Length: -1\r\n\r\n", err: "bad Content-Length", isErr: ErrBadHeader},
		{name: "zero length", in: "Content-Length: 0\r\n\r\n", err: "bad Content-Length", isErr: ErrBadHeader},
		{name: "zero length allowed", opts: dap, in: "Content-Length: 0\r\n\r\n", want: ""},
		{name: "length out of range", in: "Content-Length: 99999999999999999999\r\n\r\n", err: "bad Content-Length", isErr: ErrBadHeader},
		{name: "blank line first", in: "\r\n" + frame("{}"), err: "no Content-Length", isErr: ErrBadHeader},
		{name: "blank lines skipped", opts: dap, in: "\r\n\n" + frame("{}"), want: "{}"},
		{name: "blank lines then EOF", opts: dap, in: "\r\n\r\n", isErr: io.EOF},
		{name: "too large", opts: Options{MaxBody: 10}, in: "Content-Length: 99999999999\r\n\r\n", err: "over the limit of 10 bytes"},
		{name: "long line", opts: dap, in: strings.Repeat("x", 5000), err: "header line of more than 1024 bytes", isErr: ErrBadHeader},
		{name: "long block", in: strings.Repeat("X-Pad: 0123456789\r\n", 500) + frame("{}"), err: "header block of more than 8192 bytes", isErr: ErrBadHeader},
		{name: "long line default", in: "X: " + strings.Repeat("x", 20000) + "\r\n", err: "header line of more than 8192 bytes", isErr: ErrBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n, err := NewReader(strings.NewReader(tt.in), tt.opts).ReadFrame()
			if tt.err != "" || tt.isErr != nil {
				if err == nil || !strings.Contains(err.Error(), tt.err) || tt.isErr != nil && !errors.Is(err, tt.isErr) {
					t.Fatalf("err = %v, want %q / %v", err, tt.err, tt.isErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
			if n != int64(len(tt.in)) {
				t.Errorf("n = %d, want %d", n, len(tt.in))
			}
		})
	}
}

// A body over the limit is skipped with SkipTooLarge, and the next frame is
// read; without it the reader stops there.
func TestTooLarge(t *testing.T) {
	in := frame(strings.Repeat(" ", 60)) + frame("{}")
	r := NewReader(strings.NewReader(in), Options{MaxBody: 50, SkipTooLarge: true})
	_, n, err := r.ReadFrame()
	var tl *TooLargeError
	if !errors.As(err, &tl) || !tl.Skipped || tl.Length != 60 || tl.Limit != 50 || n != int64(len(frame(strings.Repeat(" ", 60)))) {
		t.Fatalf("first frame: n %d, err %v", n, err)
	}
	if body, _, err := r.ReadFrame(); err != nil || string(body) != "{}" {
		t.Fatalf("after the skipped frame: %q, %v", body, err)
	}

	r = NewReader(strings.NewReader(in), Options{MaxBody: 50})
	if _, _, err := r.ReadFrame(); !errors.As(err, &tl) || tl.Skipped {
		t.Fatalf("without SkipTooLarge: %v", err)
	}

	// SetMaxBody applies to the next frame.
	r = NewReader(strings.NewReader(in), Options{MaxBody: 50, SkipTooLarge: true})
	r.SetMaxBody(100)
	if body, _, err := r.ReadFrame(); err != nil || len(body) != 60 {
		t.Fatalf("raised limit: %d bytes, %v", len(body), err)
	}
}

// A peer that announces a large body and sends a few bytes makes the reader
// allocate about what arrived, not what was announced.
func TestNoAllocationFromLength(t *testing.T) {
	in := "Content-Length: 60000000\r\n\r\n" + strings.Repeat("x", 1000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := NewReader(strings.NewReader(in), Options{}).ReadFrame()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("allocated %d bytes for 1000 that arrived", grew)
	}
}

func TestWriteFrame(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	var wg sync.WaitGroup
	bodies := map[string]bool{}
	for i := range 50 {
		body := `{"n":` + strconv.Itoa(i) + `,"pad":"` + strings.Repeat("x", i*100) + `"}`
		bodies[body] = true
		wg.Go(func() {
			if err := w.WriteFrame([]byte(body)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	r := NewReader(&out, Options{})
	for range len(bodies) {
		body, _, err := r.ReadFrame()
		if err != nil || !bodies[string(body)] {
			t.Fatalf("frames interleaved: %q, %v", body, err)
		}
		delete(bodies, string(body))
	}
	if _, _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("after the frames: %v", err)
	}
	out.Reset()
	if err := w.WriteFrame([]byte("{}")); err != nil || out.String() != frame("{}") {
		t.Fatalf("wire form %q, %v", out.String(), err)
	}
}

// FuzzReadFrame: whatever arrives, the reader returns bodies of the length
// their header announced, within the limit, and never counts more bytes
// than it was given; what the Writer writes reads back unchanged.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte(frame("{}")), false)
	f.Add([]byte("content-length:3\n\n[1]\r\n"+frame("x")), true)
	f.Add([]byte("Content-Length: 0\r\n\r\nContent-Length: 70\r\n\r\n"), true)
	f.Add([]byte("Content-Length: 99999999999999999999\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, lenient bool) {
		opts := Options{MaxBody: 64, SkipTooLarge: true, MaxHeaderBytes: 256}
		if lenient {
			opts = Options{MaxBody: 64, MaxHeaderLine: 32, SkipBlankLines: true, AllowEmpty: true}
		}
		r := NewReader(bytes.NewReader(data), opts)
		var total int64
		for range 100 {
			body, n, err := r.ReadFrame()
			var tl *TooLargeError
			if errors.As(err, &tl) && tl.Skipped {
				total += n
				continue
			}
			if err != nil {
				break
			}
			if len(body) > 64 || len(body) == 0 && !lenient || n <= int64(len(body)) {
				t.Fatalf("body of %d bytes, n %d", len(body), n)
			}
			total += n
		}
		if total > int64(len(data)) {
			t.Fatalf("consumed %d of %d bytes", total, len(data))
		}

		var out bytes.Buffer
		if err := NewWriter(&out).WriteFrame(data); err != nil {
			t.Fatal(err)
		}
		body, _, err := NewReader(&out, Options{AllowEmpty: true}).ReadFrame()
		if err != nil || !bytes.Equal(body, data) {
			t.Fatalf("round trip: %q, %v", body, err)
		}
	})
}
