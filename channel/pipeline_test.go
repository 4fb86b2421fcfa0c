package channel

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// A client that sends its greeting, credentials, request and first bytes in
// one write gets every byte through: what the handshake reader buffered past
// the request is spliced first.
func TestSOCKSPipelinedHandshake(t *testing.T) {
	c, _, rec := startChannel(t, nil)
	port, _ := strconv.Atoi(startEcho(t))
	conn, err := net.Dial("tcp", c.SOCKSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	host, payload := "echo.vpc.internal", "hello, pipelined"
	msg := []byte{5, 1, 2}
	msg = append(append(msg, 1, byte(len(c.Username()))), c.Username()...)
	msg = append(append(msg, byte(len(c.Password()))), c.Password()...)
	msg = append(append(msg, 5, 1, 0, 3, byte(len(host))), host...)
	msg = binary.BigEndian.AppendUint16(msg, uint16(port))
	msg = append(msg, payload...)
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	want := []byte{5, 2, 1, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	got := make([]byte, len(want)+len(payload))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("read %q: %v", got, err)
	}
	if string(got[:len(want)]) != string(want) || string(got[len(want):]) != payload {
		t.Fatalf("got %v %q", got[:len(want)], got[len(want):])
	}
	conn.Close()
	if r := rec.wait(t, 1)[0]; r.Sent != int64(len(payload)) {
		t.Errorf("Sent %d, want %d", r.Sent, len(payload))
	}
}
