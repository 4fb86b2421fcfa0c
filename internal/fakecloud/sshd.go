package fakecloud

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sys/unix"
)

// newKey returns a fresh ed25519 key as a signer and in OpenSSH PEM form.
func newKey(comment string) (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return signer, pem.EncodeToMemory(block), nil
}

func (c *Cloud) path(name string) string { return filepath.Join(c.dir, name) }

func (c *Cloud) setupSSH() error {
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	if err := withLock(ensureUser); err != nil {
		return err
	}
	client, clientPEM, err := newKey(c.Name + "-client")
	if err != nil {
		return err
	}
	c.ClientSigner = client
	c.IdentityFile = c.path("id_ed25519")
	if err := os.WriteFile(c.IdentityFile, clientPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(c.IdentityFile+".pub", ssh.MarshalAuthorizedKey(client.PublicKey()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("authorized_keys"), ssh.MarshalAuthorizedKey(client.PublicKey()), 0o644); err != nil {
		return err
	}
	if err := c.newHostKey(); err != nil {
		return err
	}
	c.KnownHostsFile = c.path("known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(c.SSHAddr)}, c.HostPublicKey)
	if err := os.WriteFile(c.KnownHostsFile, []byte(line+"\n"), 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`Port 22
ListenAddress 0.0.0.0
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers %s
GatewayPorts clientspecified
AllowTcpForwarding yes
PermitOpen any
PermitListen any
MaxStartups 2000:100:2000
MaxSessions 2000
MaxAuthTries 10
UseDNS no
LogLevel VERBOSE
`, c.path("ssh_host_ed25519_key"), c.path("sshd.pid"), c.path("authorized_keys"), TestUser)
	return os.WriteFile(c.path("sshd_config"), []byte(cfg), 0o644)
}

// ensureUser creates the key-only test user if missing and unlocks it
// (UsePAM no refuses locked accounts).
func ensureUser() error {
	if _, err := user.Lookup(TestUser); err != nil {
		if err := run("useradd", "--create-home", "--shell", "/bin/sh", TestUser); err != nil {
			if _, err2 := user.Lookup(TestUser); err2 != nil {
				return err
			}
		}
	}
	return run("usermod", "-p", "*", TestUser)
}

func (c *Cloud) newHostKey() error {
	host, hostPEM, err := newKey(c.Name + "-host")
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.path("ssh_host_ed25519_key"), hostPEM, 0o600); err != nil {
		return err
	}
	c.hostKey = host
	c.HostPublicKey = host.PublicKey()
	return nil
}

// StartSSHD starts sshd in the bastion (it is started by Start) and waits
// until it accepts connections. The host key stays the same across restarts.
func (c *Cloud) StartSSHD() error {
	c.mu.Lock()
	running := c.sshd != nil
	c.mu.Unlock()
	if running {
		return errors.New("sshd already running")
	}
	// Append to the log across restarts.
	logf, err := os.OpenFile(c.path("sshd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", c.BastionNS, "/usr/sbin/sshd", "-D", "-e", "-f", c.path("sshd_config"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd: %w", err)
	}
	c.mu.Lock()
	c.sshd = cmd
	c.mu.Unlock()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c.sshdExited = exited
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", c.SSHAddr, time.Second)
		if err == nil {
			// Wait for the banner: the listener is up and sshd is serving.
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 4)
			_, err = conn.Read(buf)
			conn.Close()
			if err == nil && string(buf) == "SSH-" {
				return nil
			}
		}
		select {
		case werr := <-exited:
			exited <- werr
			log, _ := os.ReadFile(c.path("sshd.log"))
			return fmt.Errorf("sshd exited: %v: %s", werr, tail(string(log), 2000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd not answering on %s: %v", c.SSHAddr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StopSSHD kills sshd and every connection it serves, as if the bastion
// died. Only sshd processes inside this Cloud's bastion namespace are killed.
func (c *Cloud) StopSSHD() {
	c.mu.Lock()
	cmd := c.sshd
	c.sshd = nil
	c.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
		if c.sshdExited != nil {
			<-c.sshdExited
		}
	}
	// Per-connection children call setsid, so kill them one by one.
	for _, pid := range nsPIDs(c.BastionNS) {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(comm)), "sshd") {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// RotateHostKey gives the bastion a new host key and restarts sshd. The
// KnownHostsFile keeps the old key, so clients see a changed key.
func (c *Cloud) RotateHostKey() error {
	c.StopSSHD()
	if err := c.newHostKey(); err != nil {
		return err
	}
	return c.StartSSHD()
}

// FingerprintSHA256 is ssh.FingerprintSHA256, for tests that import only
// fakecloud.
func FingerprintSHA256(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }

// Partition silently drops all traffic between the host and the bastion
// (the bastion's host-facing link goes down): no RST, no FIN, as when a
// network path dies. Heal undoes it.
func (c *Cloud) Partition() error {
	return run("ip", "-n", c.BastionNS, "link", "set", c.Name+"b", "down")
}

// Heal restores the link that Partition took down.
func (c *Cloud) Heal() error {
	return run("ip", "-n", c.BastionNS, "link", "set", c.Name+"b", "up")
}
