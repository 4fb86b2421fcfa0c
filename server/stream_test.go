package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
)

type rwc struct {
	r   io.Reader
	out bytes.Buffer
}

func (c *rwc) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *rwc) Write(p []byte) (int, error) { return c.out.Write(p) }
func (*rwc) Close() error                  { return nil }

func TestStreamRejectsAndContinues(t *testing.T) {
	in := "Content-Length: 5\r\n\r\nhello" +
		"Content-Length: 2\r\n\r\n[]" +
		"Content-Length: 60\r\n\r\n" + strings.Repeat(" ", 60) +
		frame(`{"jsonrpc":"2.0","id":1,"method":"x/y"}`)
	c := &rwc{r: strings.NewReader(in)}
	s := newStream(c, 50, nil)
	msg, _, err := s.Read(context.Background())
	if err != nil || msg == nil {
		t.Fatalf("Read = %v, %v; replies: %s", msg, err, c.out.String())
	}
	out := c.out.String()
	for _, want := range []string{`"code":-32700`, `"code":-32600,"message":"batch`, `over the limit of 50 bytes`} {
		if !strings.Contains(out, want) {
			t.Errorf("replies lack %s:\n%s", want, out)
		}
	}
}

func FuzzStream(f *testing.F) {
	f.Add([]byte("Content-Length: 2\r\n\r\n{}"))
	f.Add([]byte("Content-Length: 40\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}    "))
	f.Add([]byte("content-length:3\n\n[1]"))
	f.Add([]byte("Content-Length: 99999999999999999999\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &rwc{r: bytes.NewReader(data)}
		s := newStream(c, 1<<16, nil)
		for range 100 {
			if _, _, err := s.Read(context.Background()); err != nil {
				return
			}
		}
	})
}

func frame(body string) string { return fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body) }
