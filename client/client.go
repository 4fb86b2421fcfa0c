// Package client is a small JSON-RPC client for the Tether backend, with LSP
// framing: what the tests and the bundled example use to drive a real
// `tether serve` over pipes or sockets, the way an IDE plugin does.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/tether-dev/tether/internal/framing"
)

// Error is an error reply.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s (code %d)", e.Message, e.Code) }

// Message is one incoming message.
type Message struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Client is one connection to the backend.
type Client struct {
	w *framing.Writer
	c io.Closer

	mu      sync.Mutex
	nextID  int64
	pending map[string]chan *Message
	notes   []Message
	noteCh  chan struct{}
	done    chan struct{}
	err     error

	// OnRequest answers server-to-client requests (window/showMessageRequest);
	// nil answers null.
	OnRequest func(method string, params json.RawMessage) (any, error)
}

// New starts a client on a connection (pipes to `tether serve`, a socket).
func New(r io.Reader, w io.Writer, c io.Closer) *Client {
	cl := &Client{w: framing.NewWriter(w), c: c, pending: map[string]chan *Message{}, noteCh: make(chan struct{}, 1), done: make(chan struct{})}
	go cl.read(framing.NewReader(r, framing.Options{}))
	return cl
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// Done is closed when the server closed the connection.
func (c *Client) Done() <-chan struct{} { return c.done }

func (c *Client) read(r *framing.Reader) {
	defer close(c.done)
	for {
		body, _, err := r.ReadFrame()
		if err != nil {
			c.fail(err)
			return
		}
		var m Message
		if err := json.Unmarshal(body, &m); err != nil {
			c.fail(fmt.Errorf("bad message %q: %v", body, err))
			return
		}
		switch {
		case m.Method != "" && len(m.ID) > 0:
			go c.answer(m)
		case m.Method != "":
			c.addNote(m)
		default:
			c.mu.Lock()
			ch := c.pending[string(m.ID)]
			delete(c.pending, string(m.ID))
			c.mu.Unlock()
			if ch != nil {
				ch <- &m
			} else {
				c.addNote(m) // a reply to no request of ours (e.g. to garbage)
			}
		}
	}
}

func (c *Client) addNote(m Message) {
	c.mu.Lock()
	c.notes = append(c.notes, m)
	c.mu.Unlock()
	select {
	case c.noteCh <- struct{}{}:
	default:
	}
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(err, io.EOF) {
		err = io.EOF
	}
	c.err = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
}

func (c *Client) answer(m Message) {
	var res any
	var err error
	if c.OnRequest != nil {
		res, err = c.OnRequest(m.Method, m.Params)
	}
	out := map[string]any{"jsonrpc": "2.0", "id": m.ID}
	if err != nil {
		out["error"] = map[string]any{"code": -32603, "message": err.Error()}
	} else {
		out["result"] = res
	}
	b, _ := json.Marshal(out)
	_ = c.WriteRaw(b)
}

// WriteRaw sends body with LSP framing, whatever it holds.
func (c *Client) WriteRaw(body []byte) error { return c.w.WriteFrame(body) }

// Send sends a request and returns its id without waiting.
func (c *Client) Send(method string, params any) (json.RawMessage, chan *Message, error) {
	c.mu.Lock()
	c.nextID++
	id := json.RawMessage(strconv.FormatInt(c.nextID, 10))
	ch := make(chan *Message, 1)
	c.pending[string(id)] = ch
	c.mu.Unlock()
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if err != nil {
		return nil, nil, err
	}
	return id, ch, c.WriteRaw(b)
}

// Call sends a request and waits for its reply; result may be nil. An error
// reply is returned as *Error.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	_, ch, err := c.Send(method, params)
	if err != nil {
		return err
	}
	return c.Wait(ctx, ch, result)
}

// Wait waits for the reply to a sent request.
func (c *Client) Wait(ctx context.Context, ch chan *Message, result any) error {
	select {
	case m, ok := <-ch:
		if !ok {
			c.mu.Lock()
			defer c.mu.Unlock()
			return fmt.Errorf("connection closed: %v", c.err)
		}
		if m.Error != nil {
			return m.Error
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Notify sends a notification.
func (c *Client) Notify(method string, params any) error {
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params})
	if err != nil {
		return err
	}
	return c.WriteRaw(b)
}

// Notifications returns the notifications (and stray replies) received so far.
func (c *Client) Notifications() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Message(nil), c.notes...)
}

// WaitNotification waits until a received message satisfies match.
func (c *Client) WaitNotification(ctx context.Context, match func(Message) bool) (Message, error) {
	for {
		for _, m := range c.Notifications() {
			if match(m) {
				return m, nil
			}
		}
		select {
		case <-c.noteCh:
		case <-c.done:
			for _, m := range c.Notifications() {
				if match(m) {
					return m, nil
				}
			}
			return Message{}, errors.New("connection closed")
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}
