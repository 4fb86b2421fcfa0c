package workspace

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/tether-dev/tether/internal/errcat"
)

// ErrConflict is returned when a save names a revision that is no longer the
// file's: someone else (another IDE window, an editor) changed it meanwhile.
// It is a user error: the request carried a stale revision.
var ErrConflict = errcat.User.New("tether.yaml was changed by someone else")

// ErrNotFound is returned for a name that is not in the file. It is a user
// error: the request named something that does not exist.
var ErrNotFound = errcat.User.New("not found")

// Workspace is a directory holding tether.yaml.
type Workspace struct {
	Dir string
	// Logger, when set, receives warnings about the file (e.g. writable by
	// other users) when it is written.
	Logger *slog.Logger

	cleanOnce sync.Once
	mu        sync.Mutex
	cached    *Snapshot
	stamp     fileStamp
}

// fileStamp identifies a version of the file without reading it; every
// save replaces the file (new inode).
type fileStamp struct {
	ino, size int64
	mtime     int64
	ctime     int64
}

func stampOf(path string) (fileStamp, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileStamp{}, false
	}
	return fileStamp{ino: int64(st.Ino), size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}, true
}

// Path is the workspace file's path.
func (w *Workspace) Path() string { return filepath.Join(w.Dir, FileName) }

// Snapshot is the file as read at one revision.
type Snapshot struct {
	File     File
	Revision string   // a hash of the file's bytes (of nothing, when there is no file yet)
	Problems Problems // schema and meaning problems, with line numbers
	root     *yaml.Node
}

// SyntaxError is a tether.yaml that is not YAML at all: a config error.
type SyntaxError struct {
	Path string
	Err  error
}

// ErrorCategory: the file must be fixed.
func (e *SyntaxError) ErrorCategory() errcat.Category { return errcat.Config }

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s is not valid YAML: %v (fix the file, then try again)", e.Path, e.Err)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

func revision(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// Load reads the workspace file. A missing file is an empty workspace. A
// file with problems still loads as far as it can; the problems are in the
// snapshot. The snapshot is shared: callers must not modify it. An
// unchanged file (same inode, size and times) is not parsed again.
func (w *Workspace) Load() (*Snapshot, error) {
	w.cleanOnce.Do(func() {
		if p, err := resolveLink(w.Path()); err == nil {
			removeStaleTemps(p)
		}
	})
	st, ok := stampOf(w.Path())
	w.mu.Lock()
	if ok && w.cached != nil && w.stamp == st {
		s := w.cached
		w.mu.Unlock()
		return s, nil
	}
	w.mu.Unlock()
	s, err := w.load()
	if err == nil && ok {
		w.mu.Lock()
		w.cached, w.stamp = s, st
		w.mu.Unlock()
	}
	return s, err
}

func (w *Workspace) load() (*Snapshot, error) {
	data, err := os.ReadFile(w.Path())
	if errors.Is(err, fs.ErrNotExist) {
		return &Snapshot{File: File{Version: CurrentVersion}, Revision: revision(nil)}, nil
	}
	if err != nil {
		return nil, errcat.Environment.Wrap(err) // e.g. not readable, a directory
	}
	return parse(w.Path(), data)
}

// Parse reads workspace file content; name is used in messages.
func Parse(name string, data []byte) (*Snapshot, error) { return parse(name, data) }

func parse(name string, data []byte) (*Snapshot, error) {
	s := &Snapshot{Revision: revision(data)}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			s.File.Version = CurrentVersion
			return s, nil
		}
		return nil, &SyntaxError{Path: name, Err: err}
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return nil, &SyntaxError{Path: name, Err: errors.New("more than one YAML document")}
	}
	if err := checkAliases(name, &doc); err != nil {
		return nil, err
	}
	if err := checkVersion(name, &doc); err != nil {
		return nil, err
	}
	s.root = &doc
	FileSchema.Check(&doc, "", &s.Problems)
	// A file with schema problems still decodes as far as it can; yaml
	// reports the fields it could not fill, which Check already named.
	_ = doc.Decode(&s.File)
	seen := map[string]bool{}
	for _, pr := range s.Problems {
		seen[pr.Path] = true
	}
	for _, pr := range withLines(s.File.Validate(), &doc) {
		if !seen[pr.Path] { // the schema check already said what is wrong there
			s.Problems = append(s.Problems, pr)
		}
	}
	return s, nil
}

// withLines adds the file line of each problem's path, or of its nearest
// parent for a missing field.
func withLines(ps Problems, doc *yaml.Node) Problems {
	for i := range ps {
		for path := ps[i].Path; ; {
			if n := lookup(doc, path); n != nil {
				ps[i].Line = n.Line
				break
			}
			j := strings.LastIndexAny(path, ".[")
			if j < 0 {
				break
			}
			path = path[:j]
		}
	}
	return ps
}

// Mutation changes the decoded file and the YAML tree together.
type mutation func(f *File, root *yaml.Node) error

// update runs a read-modify-write of the file under an exclusive lock, so
// that two backends (two IDE windows) never interleave their writes, and
// replaces the file atomically. If rev is not empty it must match the file's
// current revision, else ErrConflict.
func (w *Workspace) update(rev string, m mutation) (*Snapshot, error) {
	unlock, err := w.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	s, err := w.load() // never the shared snapshot: the mutation edits it
	if err != nil {
		return nil, err
	}
	if rev != "" && rev != s.Revision {
		return nil, fmt.Errorf("%w (revision %s, you have %s): reload and try again", ErrConflict, s.Revision, rev)
	}
	root := s.root
	if root != nil && docRoot(root).Kind == yaml.ScalarNode && docRoot(root).Tag == "!!null" {
		root = nil // "---" or "~" alone: an empty file
	}
	if root != nil {
		if err := checkTop(w.Path(), root); err != nil {
			return nil, err
		}
	}
	if root == nil {
		root = &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
		setKey(root.Content[0], "version", scalarNode(fmt.Sprint(CurrentVersion), "!!int"))
	}
	if err := m(&s.File, root); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	if err := writeAtomic(w.Path(), buf.Bytes()); err != nil {
		return nil, errcat.Environment.Wrap(err)
	}
	if w.Logger != nil {
		for _, warning := range w.PermissionWarnings() {
			w.Logger.Warn(warning)
		}
	}
	return parse(w.Path(), buf.Bytes())
}

// lock takes an exclusive flock on the workspace directory itself, which
// leaves no lock file behind.
func (w *Workspace) lock() (func(), error) {
	if err := os.MkdirAll(w.Dir, 0o755); err != nil {
		return nil, errcat.Environment.Wrap(err)
	}
	fd, err := unix.Open(w.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errcat.Environment.Newf("open workspace %s: %w", w.Dir, err)
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, errcat.Environment.Newf("lock workspace %s: %w", w.Dir, err)
	}
	return func() { unix.Close(fd) }, nil
}

// writeAtomic replaces path with data through a temporary file and a
// rename. A symlinked path is written through to its target (the link
// stays); temporary files that a killed writer left are removed.
func writeAtomic(path string, data []byte) error {
	path, err := resolveLink(path)
	if err != nil {
		return err
	}
	removeStaleTemps(path)
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := fmt.Sprintf("%s.tmp-%x", path, rnd)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// SaveConfig adds or replaces (by name) a run configuration. An invalid
// configuration is refused with Problems.
func (w *Workspace) SaveConfig(rev string, rc RunConfig) (*Snapshot, error) {
	return w.update(rev, func(f *File, root *yaml.Node) error {
		if ps := f.ValidateConfig(&rc); len(ps) > 0 {
			return ps
		}
		return upsert(root, "configurations", rc.Name, rc)
	})
}

// DeleteConfig removes a run configuration.
func (w *Workspace) DeleteConfig(rev, name string) (*Snapshot, error) {
	return w.update(rev, func(f *File, root *yaml.Node) error {
		if _, ok := f.Config(name); !ok {
			return fmt.Errorf("run configuration %q: %w", name, ErrNotFound)
		}
		remove(root, "configurations", name)
		return nil
	})
}

// SaveProxy adds or replaces (by name) a proxy.
func (w *Workspace) SaveProxy(rev string, px Proxy) (*Snapshot, error) {
	return w.update(rev, func(f *File, root *yaml.Node) error {
		if ps := ValidateProxy(&px); len(ps) > 0 {
			return ps
		}
		return upsert(root, "proxies", px.Name, px)
	})
}

// DeleteProxy removes a proxy that no run configuration uses.
func (w *Workspace) DeleteProxy(rev, name string) (*Snapshot, error) {
	return w.update(rev, func(f *File, root *yaml.Node) error {
		if _, ok := f.Proxy(name); !ok {
			return fmt.Errorf("proxy %q: %w", name, ErrNotFound)
		}
		var users Problems
		for i, rc := range f.Configurations {
			if (rc.Interconnect != nil && rc.Interconnect.Proxy == name) || (rc.RemoteDebug != nil && rc.RemoteDebug.Proxy == name) {
				users = append(users, Problem{Path: fmt.Sprintf("configurations[%d]", i),
					Message: fmt.Sprintf("run configuration %q uses proxy %q; change it first", rc.Name, name)})
			}
		}
		if len(users) > 0 {
			return users
		}
		remove(root, "proxies", name)
		return nil
	})
}

// SetInterconnect is the IDE toggle, persisted in the run configuration.
func (w *Workspace) SetInterconnect(rev, name string, enabled bool, proxy string) (*Snapshot, error) {
	return w.update(rev, func(f *File, root *yaml.Node) error {
		rc, ok := f.Config(name)
		if !ok {
			return fmt.Errorf("run configuration %q: %w", name, ErrNotFound)
		}
		c := *rc
		ic := Interconnect{Enabled: enabled}
		if c.Interconnect != nil {
			ic.Proxy = c.Interconnect.Proxy
		}
		if proxy != "" {
			ic.Proxy = proxy
		}
		if ic.Proxy == "" && enabled && len(f.Proxies) == 1 {
			ic.Proxy = f.Proxies[0].Name // the only proxy is the obvious choice
		}
		c.Interconnect = &ic
		if ps := f.ValidateConfig(&c); len(ps) > 0 {
			return ps
		}
		return upsert(root, "configurations", name, c)
	})
}
