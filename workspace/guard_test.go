package workspace

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

var execConfig = RunConfig{Name: "worker", Type: TypeExec, Exec: &ExecConfig{Command: []string{"./worker"}}}

// aliasBomb is the probe's file: 1000 aliases to an anchor of 1000 fields
// (about 13 KB).
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("version: 1\nconfigurations:\n  - name: a\n    type: exec\n    exec: {command: [x]}\n    env: &big {")
	for i := range 1000 {
		fmt.Fprintf(&b, "f%d: 1, ", i)
	}
	b.WriteString("}\n  - name: b\n    type: exec\n    exec:\n      command: [")
	for range 1000 {
		b.WriteString("*big, ")
	}
	b.WriteString("]\n")
	return b.String()
}

func TestAliasBombRefused(t *testing.T) {
	bomb := aliasBomb()
	w := writeSample(t, bomb)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := w.Load()
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d bytes refused in %v, %d KiB allocated: %v", len(bomb), took, alloc>>10, err)
	var fe *FileError
	if !errors.As(err, &fe) || fe.Line != 10 || !strings.Contains(err.Error(), "aliases expand to more than") {
		t.Fatalf("Load = %v, want a FileError at line 10", err)
	}
	if took > 2*time.Second || alloc > 64<<20 {
		t.Fatalf("refusing took %v and %d MiB", took, alloc>>20)
	}
	if _, err := w.SaveConfig("", execConfig); !errors.As(err, &fe) {
		t.Fatalf("SaveConfig = %v, want a FileError", err)
	}
	if data, _ := os.ReadFile(w.Path()); string(data) != bomb {
		t.Fatal("the file was changed")
	}
}

func TestSmallAliasesStillWork(t *testing.T) {
	w := writeSample(t, `version: 1
configurations:
  - name: a
    type: exec
    exec: {command: [./a]}
    env: &common {REGION: eu, LOG: debug}
  - name: b
    type: exec
    exec: {command: [./b]}
    env: *common
`)
	s, err := w.Load()
	if err != nil || len(s.Problems) > 0 {
		t.Fatalf("Load = %v, %v", err, s)
	}
	if rc, _ := s.File.Config("b"); rc.Env["REGION"] != "eu" {
		t.Fatalf("alias not expanded: %+v", rc.Env)
	}
}

func TestUnknownVersionRefused(t *testing.T) {
	content := "# from a newer Tether\nversion: 2\nproxies: []\n"
	w := writeSample(t, content)
	var fe *FileError
	if _, err := w.Load(); !errors.As(err, &fe) || fe.Line != 2 || !strings.Contains(err.Error(), "version 2 is not supported") {
		t.Fatalf("Load = %v", err)
	}
	if _, err := w.SaveConfig("", execConfig); !errors.As(err, &fe) {
		t.Fatalf("SaveConfig = %v, want a FileError", err)
	}
	if data, _ := os.ReadFile(w.Path()); string(data) != content {
		t.Fatalf("the file was rewritten:\n%s", data)
	}
}

func TestTopNotAnObjectRefusedForWrites(t *testing.T) {
	for _, content := range []string{"- a\n- b\n", "just a string\n"} {
		w := writeSample(t, content)
		s, err := w.Load()
		if err != nil || len(s.Problems) == 0 {
			t.Fatalf("Load(%q) = %v, %v; want problems", content, s, err)
		}
		var fe *FileError
		if _, err := w.SaveConfig("", execConfig); !errors.As(err, &fe) || fe.Line != 1 {
			t.Fatalf("SaveConfig on %q = %v, want a FileError at line 1", content, err)
		}
	}
	// A document that is only "---" is an empty file.
	w := writeSample(t, "---\n")
	if _, err := w.SaveConfig("", execConfig); err != nil {
		t.Fatal(err)
	}
}

func TestSymlinkWrittenThrough(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "dotfiles", "tether.yaml")
	ws := filepath.Join(dir, "project")
	for _, d := range []string{filepath.Dir(real), ws} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(real, []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(ws, FileName)
	if err := os.Symlink("../dotfiles/tether.yaml", link); err != nil {
		t.Fatal(err)
	}
	w := &Workspace{Dir: ws}
	if _, err := w.SaveConfig("", execConfig); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("tether.yaml is no longer a symlink: %v %v", st.Mode(), err)
	}
	data, _ := os.ReadFile(real)
	if !strings.Contains(string(data), "name: worker") || !strings.Contains(string(data), "# the VPC") {
		t.Fatalf("target not updated:\n%s", data)
	}
	if st, _ := os.Stat(real); st.Mode().Perm() != 0o600 {
		t.Fatalf("target mode %v, want 0600 kept", st.Mode())
	}
	if s, _ := w.Load(); len(s.File.Configurations) != 2 {
		t.Fatalf("reload: %+v", s.File)
	}
}

func TestStaleTempFilesRemoved(t *testing.T) {
	w := writeSample(t, sample)
	old := w.Path() + ".tmp-0123456789ab"
	fresh := w.Path() + ".tmp-ba9876543210"
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("half a file"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-2 * staleTempAge)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Load(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("stale temp file still there after open: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("a fresh temp file (a save in progress) was removed: %v", err)
	}
	// A write removes them too.
	if err := os.WriteFile(old, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(old, long, long)
	if _, err := w.SaveConfig("", execConfig); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("stale temp file still there after a save: %v", err)
	}
}

func TestPermissionWarnings(t *testing.T) {
	w := writeSample(t, sample)
	if ws := w.PermissionWarnings(); len(ws) != 0 {
		t.Fatalf("warnings for private files: %v", ws)
	}
	if err := os.Chmod(w.Dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(w.Path(), 0o666); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	w.Logger = slog.New(slog.NewTextHandler(&log, nil))
	if ws := w.PermissionWarnings(); len(ws) != 2 {
		t.Fatalf("warnings: %v", ws)
	}
	if _, err := w.SaveConfig("", execConfig); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "writable by other users") {
		t.Fatalf("no warning logged on save: %s", log.String())
	}
}
