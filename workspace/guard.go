package workspace

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tether-dev/tether/internal/errcat"
)

// FileError is a workspace file that this build cannot read or must not
// write: an unknown format version, a file that is not an object at the
// top, aliases that expand too far. It is a config error (code 1003).
type FileError struct {
	Path string
	Line int // 0 when no line applies
	Msg  string
}

// ErrorCategory: the file must be fixed (or Tether upgraded).
func (e *FileError) ErrorCategory() errcat.Category { return errcat.Config }

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// MaxAliasNodes bounds how many YAML nodes the aliases of a workspace file
// may stand for in total (an alias counts as the size of its anchor). A
// hand-written file that shares a few env maps uses a few hundred; a file
// of 1000 aliases to an anchor of 1000 fields (an "alias bomb", 13 KB that
// expand to millions of nodes) is refused before anything walks it.
const MaxAliasNodes = 10000

// checkAliases refuses a document whose aliases expand to more than
// MaxAliasNodes nodes, naming the line of the alias that goes over. It
// visits each node of the parsed tree once (anchor sizes are memoized).
func checkAliases(name string, doc *yaml.Node) error {
	sizes := map[*yaml.Node]int{}
	expanded := 0
	var size func(n *yaml.Node) (int, error)
	size = func(n *yaml.Node) (int, error) {
		if v, ok := sizes[n]; ok {
			if v < 0 {
				return 0, &FileError{Path: name, Line: n.Line, Msg: "a YAML anchor contains an alias to itself"}
			}
			return v, nil
		}
		sizes[n] = -1 // being measured
		total := 1
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			v, err := size(n.Alias)
			if err != nil {
				return 0, err
			}
			expanded += v
			if expanded > MaxAliasNodes {
				return 0, &FileError{Path: name, Line: n.Line, Msg: fmt.Sprintf(
					"YAML aliases expand to more than %d nodes (at the alias *%s); refusing the file: use fewer or smaller aliases",
					MaxAliasNodes, n.Value)}
			}
			total += v
		}
		for _, c := range n.Content {
			v, err := size(c)
			if err != nil {
				return 0, err
			}
			total += v
		}
		sizes[n] = total
		return total, nil
	}
	_, err := size(doc)
	return err
}

// checkVersion refuses a file whose version this build does not know: it
// would misread it, and a save would destroy what it does not understand.
// A file without a version key is read as the current version.
func checkVersion(name string, doc *yaml.Node) error {
	root := docRoot(doc)
	if root.Kind != yaml.MappingNode {
		return nil // the schema check reports it
	}
	v := getKey(root, "version")
	if v == nil {
		return nil
	}
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if n, err := strconv.Atoi(v.Value); err == nil && n == CurrentVersion && v.Kind == yaml.ScalarNode {
		return nil
	}
	return &FileError{Path: name, Line: v.Line, Msg: fmt.Sprintf(
		"version %s is not supported: this Tether reads and writes version %d files only (upgrade Tether; the file is left unchanged)",
		strings.TrimSpace(v.Value), CurrentVersion)}
}

// checkTop refuses to write a file whose top is not an object.
func checkTop(name string, doc *yaml.Node) error {
	root := docRoot(doc)
	if root.Kind == yaml.MappingNode {
		return nil
	}
	what := map[yaml.Kind]string{yaml.SequenceNode: "a list", yaml.ScalarNode: "a single value", yaml.AliasNode: "an alias"}[root.Kind]
	return &FileError{Path: name, Line: root.Line, Msg: fmt.Sprintf(
		"the top of the file must be an object (version, proxies, configurations), not %s; fix the file, then try again", what)}
}

// staleTempAge is how old a temporary file of an interrupted save must be
// before it is removed: a save that is still running takes milliseconds.
const staleTempAge = time.Minute

// removeStaleTemps removes the tether.yaml.tmp-* files that a killed
// writer left next to path.
func removeStaleTemps(path string) {
	matches, _ := filepath.Glob(path + ".tmp-*")
	for _, m := range matches {
		if st, err := os.Lstat(m); err == nil && st.Mode().IsRegular() && time.Since(st.ModTime()) > staleTempAge {
			_ = os.Remove(m)
		}
	}
}

// resolveLink follows path while it is a symlink (a tether.yaml kept in a
// dotfiles repository, say) and returns the file to replace, which may not
// exist yet.
func resolveLink(path string) (string, error) {
	for range 40 {
		st, err := os.Lstat(path)
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			return path, nil
		}
		target, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return "", errcat.Environment.Newf("%s: too many levels of symbolic links", path)
}

// PermissionWarnings says when other users could change the workspace file:
// the directory or the file (its target, when a symlink) writable by group
// or others. Such a file can point launches at any proxy and command.
func (w *Workspace) PermissionWarnings() []string {
	var out []string
	if st, err := os.Stat(w.Dir); err == nil && st.Mode().Perm()&0o022 != 0 {
		out = append(out, fmt.Sprintf("the workspace directory %s is writable by other users (mode %04o): they can replace %s; run chmod go-w on it",
			w.Dir, st.Mode().Perm(), FileName))
	}
	if st, err := os.Stat(w.Path()); err == nil && st.Mode().Perm()&0o022 != 0 {
		out = append(out, fmt.Sprintf("%s is writable by other users (mode %04o): they can change what is launched; run chmod go-w on it",
			w.Path(), st.Mode().Perm()))
	}
	return out
}
