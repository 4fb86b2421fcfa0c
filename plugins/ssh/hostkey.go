package ssh

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tether-dev/tether/internal/errcat"
)

// Errors that Open wraps, for callers that need to tell them apart. Their
// errcat category is set where they are returned.
var (
	// ErrHostKeyChanged: the host presented a key other than the one in
	// known_hosts. Never accepted automatically. Environment: the machine
	// (or someone in between) changed.
	ErrHostKeyChanged = errors.New("host key changed")
	// ErrHostKeyUnknown: the host key is not in known_hosts and was not
	// accepted. Config when refused (add it to known_hosts or set
	// strictHostKeyChecking: accept-new), also after the user said Cancel;
	// environment when asking the IDE failed.
	ErrHostKeyUnknown = errors.New("host key unknown")
	// ErrAuth: no authentication method was accepted. Environment when the
	// server refused them; config when there was none to offer.
	ErrAuth = errors.New("authentication failed")
)

// knownHostsMu serialises appends to known_hosts files within the process.
var knownHostsMu sync.Mutex

// hostKeys verifies host keys of one tunnel against its known_hosts file.
type hostKeys struct {
	file     string
	strict   string
	prompts  Prompts
	progress func(string)

	mu       sync.Mutex
	accepted map[string]string // normalized address -> marshalled key accepted in this process
}

func (hk *hostKeys) db() (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(hk.file); errors.Is(err, os.ErrNotExist) {
		return knownhosts.New()
	}
	cb, err := knownhosts.New(hk.file)
	if err != nil {
		return nil, errcat.Config.Newf("known_hosts %s: %w", hk.file, err)
	}
	return cb, nil
}

var probeKey = func() ssh.PublicKey {
	pub, _, _ := ed25519.GenerateKey(nil)
	k, _ := ssh.NewPublicKey(pub)
	return k
}()

// algorithms returns the host key algorithms to offer for addr: those of
// the keys known_hosts has for it, so that a host known by its ed25519 key
// is not asked for its RSA key (which would look like a changed key).
func (hk *hostKeys) algorithms(addr string) []string {
	cb, err := hk.db()
	if err != nil {
		return nil
	}
	err = cb(addr, fakeAddr(addr), probeKey)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range ke.Want {
		var add []string
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		default:
			add = []string{t}
		}
		for _, a := range add {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// fakeAddr gives knownhosts a remote address that parses; the hostname
// argument takes precedence anyway.
func fakeAddr(addr string) net.Addr {
	host, port, _ := net.SplitHostPort(addr)
	return &net.TCPAddr{IP: net.ParseIP(host), Port: atoiOr(port, 22)}
}

func atoiOr(s string, def int) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return def
		}
		n = n*10 + int(c-'0')
	}
	if s == "" {
		return def
	}
	return n
}

// callback returns the host key callback for the hop at addr ("host:port").
func (hk *hostKeys) callback(ctx context.Context, addr string) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		norm := knownhosts.Normalize(addr)
		hk.mu.Lock()
		ok := hk.accepted[norm] == string(key.Marshal())
		hk.mu.Unlock()
		if ok {
			return nil
		}
		cb, err := hk.db()
		if err != nil {
			return err
		}
		err = cb(addr, fakeAddr(addr), key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			return err
		}
		fp := ssh.FingerprintSHA256(key)
		if len(ke.Want) > 0 {
			w := ke.Want[0]
			return errcat.Environment.Newf("%w: REMOTE HOST IDENTIFICATION HAS CHANGED for %s: it offered %s key %s, but %s:%d has %s key %s. "+
				"Someone could be intercepting the connection, or the host was reinstalled. "+
				"If you trust the new key, remove the old one with `ssh-keygen -R %s -f %s` and connect again",
				ErrHostKeyChanged, addr, key.Type(), fp, w.Filename, w.Line, w.Key.Type(), ssh.FingerprintSHA256(w.Key),
				shellQuote(norm), shellQuote(hk.file))
		}
		accept := false
		switch {
		case hk.strict == StrictAcceptNew:
			accept = true
		case hk.prompts != nil:
			accept, err = hk.prompts.HostKey(ctx, addr, fp, key.Type())
			if err != nil {
				return errcat.Environment.Newf("%w: %s (%s %s): asking: %v", ErrHostKeyUnknown, addr, key.Type(), fp, err)
			}
		}
		if !accept {
			return errcat.Config.Newf("%w: %s offered %s key %s, which is not in %s. "+
				"Check the fingerprint with the machine's owner, then add it (ssh-keyscan) or set strictHostKeyChecking: accept-new",
				ErrHostKeyUnknown, addr, key.Type(), fp, hk.file)
		}
		hk.mu.Lock()
		hk.accepted[norm] = string(key.Marshal())
		hk.mu.Unlock()
		if err := appendKnownHost(hk.file, norm, key); err != nil {
			return errcat.Environment.Newf("adding %s to %s: %w", addr, hk.file, err)
		}
		if hk.progress != nil {
			hk.progress(fmt.Sprintf("Added %s key %s for %s to %s", key.Type(), fp, addr, hk.file))
		}
		return nil
	}
}

func appendKnownHost(file, norm string, key ssh.PublicKey) error {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	// Start on a fresh line even if the file lacks a final newline.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		b := make([]byte, 1)
		if r, err := os.Open(file); err == nil {
			if _, err := r.ReadAt(b, st.Size()-1); err == nil && b[0] != '\n' {
				_, _ = f.WriteString("\n")
			}
			r.Close()
		}
	}
	if _, err := f.WriteString(knownhosts.Line([]string{norm}, key) + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func shellQuote(s string) string {
	for _, c := range s {
		if !(c == '.' || c == '-' || c == '_' || c == '/' || c == ':' || c == '@' || c == '~' ||
			(c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return "'" + s + "'"
		}
	}
	return s
}
