// Package ssh is the SSH transport of Tether: a tunnel.Tunnel over a small
// pool of SSH connections to a proxy machine (bastion), optionally through
// jump hosts, with known_hosts verification, keepalive and reconnect.
//
// Its errors carry their category (internal/errcat). Config: the ssh config
// file, a bad port or ProxyJump, an identity file that cannot be read or
// parsed, a broken known_hosts file, nothing to authenticate with, and an
// unknown host key that was not accepted (the fix is known_hosts or
// strictHostKeyChecking, whether or not the user was asked). User: a wrong
// passphrase, a prompt the user cancelled. Environment: dialling, the SSH
// handshake, authentication the server refused, a changed host key (the
// machine, or someone in between, changed), ProxyJump hops, keepalive and
// lost connections, ssh-agent.
package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"
	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/internal/errcat"
)

// Host key checking modes.
const (
	StrictYes       = "yes"        // unknown keys are refused unless Prompts accepts them
	StrictAcceptNew = "accept-new" // unknown keys are added to known_hosts; changed keys refused
)

// AgentMode says whether to use ssh-agent.
type AgentMode string

const (
	AgentAuto AgentMode = ""    // use SSH_AUTH_SOCK when set
	AgentOn   AgentMode = "yes" // require SSH_AUTH_SOCK
	AgentOff  AgentMode = "no"
)

// Prompts asks the user. A nil Prompts refuses unknown host keys (unless
// accept-new) and disables interactive authentication.
type Prompts interface {
	// HostKey asks whether to trust an unknown host key.
	HostKey(ctx context.Context, host, fingerprint, keyType string) (accept bool, err error)
	// Secret asks for a passphrase, password or keyboard-interactive answer.
	Secret(ctx context.Context, prompt string, echo bool) (string, error)
}

// Config says how to reach the proxy machine.
type Config struct {
	Host                  string   // host name, address or ssh_config Host alias
	Port                  int      // default 22 (or ssh_config Port)
	User                  string   // default ssh_config User, else the local user
	IdentityFiles         []string // default ssh_config IdentityFile, else ~/.ssh/id_{ed25519,ecdsa,rsa}
	KnownHostsFile        string   // default ~/.ssh/known_hosts
	StrictHostKeyChecking string   // "yes" (default) or "accept-new"
	ProxyJump             string   // "user@host:port,user2@host2": jump chain, first hop first
	Password              string   // optional; used for password and keyboard-interactive
	Agent                 AgentMode
	SSHConfigFile         string // default ~/.ssh/config; "none" disables it
	PoolSize              int    // SSH connections to spread streams over; default 4

	KeepaliveInterval time.Duration // default 1s
	KeepaliveTimeout  time.Duration // no answer for this long = dead; default 3s
	ConnectTimeout    time.Duration // per connection attempt; default 10s

	Prompts  Prompts
	Progress func(message string) // optional; must not block

	// Dial, when set, replaces the TCP connect to the first hop (the first
	// jump host, or Host when there are none): the SSH handshake runs over
	// the net.Conn it returns (e.g. a Kubernetes port-forward stream). It is
	// called for every connection of the pool and every reconnect; Host and
	// Port then only name the endpoint (known_hosts, messages).
	Dial func(ctx context.Context) (net.Conn, error)

	// Signers are in-memory keys to authenticate with (tried before the
	// identity files; with Signers and no IdentityFiles the default
	// identity files are not read).
	Signers []ssh.Signer
	// HostKey, when set, is the only host key accepted for Host
	// (known_hosts is not read or written for it), e.g. a per-session key
	// made for a Kubernetes agent pod.
	HostKey ssh.PublicKey
}

// hop is one resolved SSH endpoint.
type hop struct {
	Host          string // what we connect to (after HostName)
	Port          int
	User          string
	IdentityFiles []string
}

func (h hop) addr() string { return joinHostPort(h.Host, h.Port) }

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// resolved is a Config after defaults and ssh_config were applied.
type resolved struct {
	Config
	target hop
	jumps  []hop
}

func homeDir() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	return "/"
}

func expandHome(p string) string {
	if p == "~" {
		return homeDir()
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(homeDir(), p[2:])
	}
	return p
}

// sshConfig is the subset of ssh_config(5) we honour.
type sshConfig struct{ cfg *ssh_config.Config }

func loadSSHConfig(path string) (*sshConfig, error) {
	if path == "none" {
		return &sshConfig{}, nil
	}
	explicit := path != ""
	if path == "" {
		path = filepath.Join(homeDir(), ".ssh", "config")
	}
	f, err := os.Open(expandHome(path))
	if err != nil {
		if !explicit && errors.Is(err, os.ErrNotExist) {
			return &sshConfig{}, nil
		}
		return nil, errcat.Config.Newf("ssh config: %w", err)
	}
	defer f.Close()
	cfg, err := ssh_config.Decode(f)
	if err != nil {
		return nil, errcat.Config.Newf("ssh config %s: %w", path, err)
	}
	return &sshConfig{cfg: cfg}, nil
}

func (s *sshConfig) get(alias, key string) string {
	if s == nil || s.cfg == nil {
		return ""
	}
	v, _ := s.cfg.Get(alias, key)
	return strings.TrimSpace(v)
}

func (s *sshConfig) getAll(alias, key string) []string {
	if s == nil || s.cfg == nil {
		return nil
	}
	v, _ := s.cfg.GetAll(alias, key)
	return v
}

// resolveHop applies ssh_config to an endpoint given as alias/host, with
// explicit values (non-zero) taking precedence.
func (s *sshConfig) resolveHop(alias string, port int, usr string, ids []string) (hop, error) {
	h := hop{Host: alias, Port: port, User: usr, IdentityFiles: ids}
	if hn := s.get(alias, "HostName"); hn != "" {
		h.Host = strings.ReplaceAll(hn, "%h", alias)
	}
	if h.Port == 0 {
		if p := s.get(alias, "Port"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n <= 0 || n > 65535 {
				return h, errcat.Config.Newf("ssh config: Host %s: bad Port %q", alias, p)
			}
			h.Port = n
		} else {
			h.Port = 22
		}
	}
	if h.User == "" {
		h.User = s.get(alias, "User")
	}
	if h.User == "" {
		if u, err := user.Current(); err == nil {
			h.User = u.Username
		}
	}
	if len(h.IdentityFiles) == 0 {
		h.IdentityFiles = s.getAll(alias, "IdentityFile")
	}
	return h, nil
}

// parseJump parses one ProxyJump element "[user@]host[:port]".
func parseJump(s string) (usr, host string, port int, err error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "ssh://")
	if i := strings.LastIndex(s, "@"); i >= 0 {
		usr, s = s[:i], s[i+1:]
	}
	host = s
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", "", 0, fmt.Errorf("bad jump host %q", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", "", 0, fmt.Errorf("bad jump host %q", s)
			}
			if port, err = strconv.Atoi(rest[1:]); err != nil {
				return "", "", 0, fmt.Errorf("bad port in jump host %q", s)
			}
		}
	} else if i := strings.LastIndex(s, ":"); i >= 0 && strings.Count(s, ":") == 1 {
		host = s[:i]
		if port, err = strconv.Atoi(s[i+1:]); err != nil {
			return "", "", 0, fmt.Errorf("bad port in jump host %q", s)
		}
	}
	if host == "" || (port < 0 || port > 65535) {
		return "", "", 0, fmt.Errorf("bad jump host %q", s)
	}
	return usr, host, port, nil
}

// resolve applies defaults and ssh_config to cfg.
func resolve(cfg Config) (*resolved, error) {
	if cfg.Host == "" {
		return nil, errcat.Config.New("ssh: no host")
	}
	sc, err := loadSSHConfig(cfg.SSHConfigFile)
	if err != nil {
		return nil, err
	}
	r := &resolved{Config: cfg}
	r.target, err = sc.resolveHop(cfg.Host, cfg.Port, cfg.User, cfg.IdentityFiles)
	if err != nil {
		return nil, err
	}
	if r.KnownHostsFile == "" {
		if f := sc.get(cfg.Host, "UserKnownHostsFile"); f != "" {
			r.KnownHostsFile = strings.Fields(f)[0]
		} else {
			r.KnownHostsFile = "~/.ssh/known_hosts"
		}
	}
	r.KnownHostsFile = expandHome(r.KnownHostsFile)
	switch r.StrictHostKeyChecking {
	case "":
		r.StrictHostKeyChecking = StrictYes
	case StrictYes, StrictAcceptNew:
	default:
		return nil, errcat.Config.Newf("ssh: strictHostKeyChecking must be %q or %q, not %q", StrictYes, StrictAcceptNew, r.StrictHostKeyChecking)
	}
	jump := cfg.ProxyJump
	if jump == "" {
		jump = sc.get(cfg.Host, "ProxyJump")
	}
	if jump != "" && jump != "none" {
		for _, el := range strings.Split(jump, ",") {
			u, h, p, err := parseJump(el)
			if err != nil {
				return nil, errcat.Config.Newf("ssh: proxyJump: %w", err)
			}
			hp, err := sc.resolveHop(h, p, u, nil)
			if err != nil {
				return nil, err
			}
			if len(hp.IdentityFiles) == 0 {
				hp.IdentityFiles = r.target.IdentityFiles
			}
			r.jumps = append(r.jumps, hp)
		}
	}
	if r.PoolSize <= 0 {
		r.PoolSize = 4
	}
	if r.KeepaliveInterval <= 0 {
		r.KeepaliveInterval = time.Second
	}
	if r.KeepaliveTimeout <= 0 {
		r.KeepaliveTimeout = 3 * time.Second
	}
	if r.ConnectTimeout <= 0 {
		r.ConnectTimeout = 10 * time.Second
	}
	return r, nil
}
