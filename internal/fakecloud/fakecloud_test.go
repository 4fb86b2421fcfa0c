package fakecloud

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFakeCloudIsolation(t *testing.T) {
	c := Start(t)

	// Not reachable from the host: the unreachable route fails fast.
	start := time.Now()
	conn, err := net.DialTimeout("tcp", c.HTTPAddr, 5*time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("vpc service %s reachable from the host", c.HTTPAddr)
	}
	if !errors.Is(err, syscall.EHOSTUNREACH) && !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("dial from host: %v, want host unreachable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("dial from host took %v, want a fast failure", d)
	}

	// Reachable from the bastion.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err = c.DialFromBastion(ctx, c.HTTPAddr)
	if err != nil {
		t.Fatalf("dial from bastion: %v", err)
	}
	io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n")
	b, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.Contains(string(b), c.HTTPBody) {
		t.Errorf("GET / from bastion = %q, want body %q", b, c.HTTPBody)
	}

	// The echo service echoes from the bastion; nothing listens on ClosedAddr.
	conn, err = c.DialFromBastion(ctx, c.EchoAddr)
	if err != nil {
		t.Fatalf("dial echo: %v", err)
	}
	io.WriteString(conn, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Errorf("echo = %q, %v", buf, err)
	}
	conn.Close()
	if _, err := c.DialFromBastion(ctx, c.ClosedAddr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial closed port: %v, want refused", err)
	}

	// sshd reachable from the host.
	conn, err = net.DialTimeout("tcp", c.SSHAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("sshd not reachable from host: %v", err)
	}
	conn.Close()

	// Bastion has no ip forwarding.
	out, err := c.ExecIn(c.BastionNS, "cat", "/proc/sys/net/ipv4/ip_forward")
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Errorf("bastion ip_forward = %q, %v; want 0", out, err)
	}

	// A listener in the vpc is reachable from the bastion, not the host.
	ln, err := c.ListenInVPC(c.ServiceIP + ":0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if conn, err := ln.Accept(); err == nil {
			conn.Close()
		}
	}()
	conn, err = c.DialFromBastion(ctx, ln.Addr().String())
	if err != nil {
		t.Fatalf("dial vpc listener from bastion: %v", err)
	}
	conn.Close()
}

func TestSSHDRestart(t *testing.T) {
	c := Start(t)
	c.StopSSHD()
	if conn, err := net.DialTimeout("tcp", c.SSHAddr, time.Second); err == nil {
		conn.Close()
		t.Fatal("sshd still answering after StopSSHD")
	}
	if err := c.StartSSHD(); err != nil {
		t.Fatal(err)
	}
	old := c.HostPublicKey
	if err := c.RotateHostKey(); err != nil {
		t.Fatal(err)
	}
	if string(old.Marshal()) == string(c.HostPublicKey.Marshal()) {
		t.Error("RotateHostKey kept the key")
	}
}
