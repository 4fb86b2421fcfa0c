package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/internal/agentproto"
)

// ParseAuthorizedKeys parses an authorized_keys file. Blank lines and
// comments are skipped; options (from="...", etc.) are ignored.
func ParseAuthorizedKeys(data []byte) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	line := 0
	for len(data) > 0 {
		line++
		var l []byte
		l, data, _ = bytes.Cut(data, []byte("\n"))
		l = bytes.TrimSpace(l)
		if len(l) == 0 || l[0] == '#' {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(l)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	return keys, nil
}

// NewKey generates an ed25519 key pair; the PEM is the private key in
// OpenSSH format (what ssh-keygen writes).
func NewKey(comment string) (ssh.Signer, []byte, error) { return agentproto.NewKey(comment) }

// LoadOrCreateKey reads an unencrypted private key from path, or generates
// an ed25519 key and writes it there (mode 0600, and path.pub with the
// public key) when the file does not exist.
func LoadOrCreateKey(path, comment string) (signer ssh.Signer, created bool, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		signer, err = ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return signer, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	signer, pemData, err := NewKey(comment)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	if err := WriteFileAtomic(path, pemData, 0o600); err != nil {
		return nil, false, err
	}
	pub := bytes.TrimSpace(ssh.MarshalAuthorizedKey(signer.PublicKey()))
	if comment != "" {
		pub = append(append(pub, ' '), comment...)
	}
	if err := WriteFileAtomic(path+".pub", append(pub, '\n'), 0o600); err != nil {
		return nil, false, err
	}
	return signer, true, nil
}

// WriteFileAtomic writes data to path through a temporary file and a rename,
// with the given permissions.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
