package fakecloud

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strings"
)

// PasswordUser is the account for password-authentication tests; it is
// separate from TestUser so that key-only tests running at the same time
// are not affected.
const PasswordUser = "tetherpw"

// EnablePasswordAuth gives PasswordUser a new random password, lets sshd
// accept passwords for it (only it) and restarts sshd. It returns the
// password.
func (c *Cloud) EnablePasswordAuth() (string, error) {
	if _, err := user.Lookup(PasswordUser); err != nil {
		if err := run("useradd", "--create-home", "--shell", "/bin/sh", PasswordUser); err != nil {
			if _, err2 := user.Lookup(PasswordUser); err2 != nil {
				return "", err
			}
		}
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	pw := hex.EncodeToString(b[:])
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(PasswordUser + ":" + pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("chpasswd: %v: %s", err, out)
	}
	cfgPath := c.path("sshd_config")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return "", err
	}
	s := strings.Replace(string(cfg), "AllowUsers "+TestUser, "AllowUsers "+TestUser+" "+PasswordUser, 1)
	s += "Match User " + PasswordUser + "\n  PasswordAuthentication yes\n"
	if err := os.WriteFile(cfgPath, []byte(s), 0o644); err != nil {
		return "", err
	}
	c.StopSSHD()
	return pw, c.StartSSHD()
}
