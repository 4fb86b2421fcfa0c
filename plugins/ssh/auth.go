package ssh

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/tether-dev/tether/internal/errcat"
)

// auth builds the authentication methods for each connection; decrypted
// keys and typed passwords are kept for reconnects.
type auth struct {
	cfg *resolved

	mu       sync.Mutex
	signers  map[string]ssh.Signer // by identity file path
	password string                // typed through Prompts.Secret
}

func defaultIdentityFiles() []string {
	var out []string
	for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		p := filepath.Join(homeDir(), ".ssh", n)
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func (a *auth) signer(ctx context.Context, path string) (ssh.Signer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.signers[path]; ok {
		return s, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, errcat.Config.Newf("identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		if a.cfg.Prompts == nil {
			return nil, errcat.Config.Newf("identity file %s is encrypted and there is no way to ask for its passphrase (use ssh-agent)", path)
		}
		for try := 0; try < 3; try++ {
			var pass string
			pass, err = a.cfg.Prompts.Secret(ctx, fmt.Sprintf("Passphrase for %s:", path), false)
			if err != nil {
				return nil, errcat.Environment.Wrap(err) // the prompt's own category, if it has one
			}
			s, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(pass))
			if !errors.Is(err, x509.IncorrectPasswordError) {
				break
			}
		}
	}
	if errors.Is(err, x509.IncorrectPasswordError) {
		return nil, errcat.User.Newf("identity file %s: %w", path, err)
	}
	if err != nil {
		return nil, errcat.Config.Newf("identity file %s: %w", path, err)
	}
	if a.signers == nil {
		a.signers = map[string]ssh.Signer{}
	}
	a.signers[path] = s
	return s, nil
}

// methods returns the auth methods for h and a func to call after the
// handshake (it closes the agent connection).
func (a *auth) methods(ctx context.Context, h hop) ([]ssh.AuthMethod, func(), error) {
	signers := append([]ssh.Signer(nil), a.cfg.Signers...)
	files := h.IdentityFiles
	explicit := len(files) > 0
	if !explicit && len(signers) == 0 {
		files = defaultIdentityFiles()
	}
	var problems []string
	for _, f := range files {
		s, err := a.signer(ctx, expandHome(f))
		if err != nil {
			if explicit && !errors.Is(err, os.ErrNotExist) {
				return nil, nil, err
			}
			problems = append(problems, err.Error())
			continue
		}
		signers = append(signers, s)
	}
	done := func() {}
	sock := os.Getenv("SSH_AUTH_SOCK")
	switch {
	case a.cfg.Agent == AgentOn && sock == "":
		return nil, nil, errcat.Environment.New("ssh-agent requested but SSH_AUTH_SOCK is not set")
	case a.cfg.Agent != AgentOff && sock != "":
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", sock)
		if err != nil {
			if a.cfg.Agent == AgentOn {
				return nil, nil, errcat.Environment.Newf("ssh-agent: %w", err)
			}
			problems = append(problems, "ssh-agent: "+err.Error())
			break
		}
		done = func() { conn.Close() }
		if as, err := agent.NewClient(conn).Signers(); err == nil {
			signers = append(signers, as...)
		}
	}
	var methods []ssh.AuthMethod
	if len(signers) > 0 {
		// One publickey method: x/crypto tries each method name once.
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if a.cfg.Password != "" || a.cfg.Prompts != nil {
		methods = append(methods,
			ssh.PasswordCallback(func() (string, error) { return a.getPassword(ctx, h) }),
			ssh.KeyboardInteractive(func(name, instruction string, questions []string, echos []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i, q := range questions {
					if a.cfg.Password != "" && !echos[i] && len(questions) == 1 {
						answers[i] = a.cfg.Password
						continue
					}
					if a.cfg.Prompts == nil {
						return nil, errors.New("no way to answer keyboard-interactive prompts")
					}
					p := strings.TrimSpace(instruction + " " + q)
					ans, err := a.cfg.Prompts.Secret(ctx, p, echos[i])
					if err != nil {
						return nil, err
					}
					answers[i] = ans
				}
				return answers, nil
			}))
	}
	if len(methods) == 0 {
		done()
		msg := "no identity file, ssh-agent or password to authenticate with"
		if len(problems) > 0 {
			msg += " (" + strings.Join(problems, "; ") + ")"
		}
		return nil, nil, errcat.Config.Newf("%w: %s", ErrAuth, msg)
	}
	return methods, done, nil
}

func (a *auth) getPassword(ctx context.Context, h hop) (string, error) {
	if a.cfg.Password != "" {
		return a.cfg.Password, nil
	}
	a.mu.Lock()
	p := a.password
	a.mu.Unlock()
	if p != "" {
		return p, nil
	}
	p, err := a.cfg.Prompts.Secret(ctx, fmt.Sprintf("Password for %s@%s:", h.User, h.Host), false)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	a.password = p
	a.mu.Unlock()
	return p, nil
}
