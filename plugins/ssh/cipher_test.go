package ssh

import (
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/internal/fakecloud"
)

// OpenSSH picks the client's first cipher it supports: the pool must run on
// AES-GCM (about twice chacha20's throughput on amd64), in both directions.
func TestNegotiatedCipher(t *testing.T) {
	c := fakecloud.Start(t)
	tun := open(t, baseConfig(c))
	tun.mu.Lock()
	first := tun.live[0]
	tun.mu.Unlock()
	am, ok := first.client.Conn.(ssh.AlgorithmsConnMetadata)
	if !ok {
		t.Fatal("x/crypto/ssh does not report the negotiated algorithms")
	}
	algs := am.Algorithms()
	if algs.Read.Cipher != ssh.CipherAES128GCM || algs.Write.Cipher != ssh.CipherAES128GCM {
		t.Errorf("ciphers read %q write %q, want %q", algs.Read.Cipher, algs.Write.Cipher, ssh.CipherAES128GCM)
	}
}
