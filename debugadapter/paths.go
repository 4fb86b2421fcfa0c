package debugadapter

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"

	"github.com/tether-dev/tether/internal/errcat"
)

// PathMapping is one substitutePath entry: From is the local directory (the
// IDE's checkout), To the same directory as the remote program was built.
type PathMapping struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Paths translates source paths between the IDE and the remote adapter.
// The first mapping whose directory holds the path wins, as in delve.
type Paths []PathMapping

// ToRemote translates a local path; paths outside every mapping are
// returned as they are.
func (ps Paths) ToRemote(p string) string {
	for _, m := range ps {
		if out, ok := substitute(p, m.From, m.To); ok {
			return out
		}
	}
	return p
}

// ToLocal translates a remote path.
func (ps Paths) ToLocal(p string) string {
	for _, m := range ps {
		if out, ok := substitute(p, m.To, m.From); ok {
			return out
		}
	}
	return p
}

// windowsStyle reports whether p looks like a Windows path (C:\x, \\host\x).
func windowsStyle(p string) bool {
	if len(p) >= 2 && p[1] == ':' && (p[0]|0x20) >= 'a' && (p[0]|0x20) <= 'z' {
		return true
	}
	return strings.HasPrefix(p, `\\`) || (strings.Contains(p, `\`) && !strings.Contains(p, "/"))
}

// substitute replaces the directory prefix from of p with to, at a path
// element boundary, converting separators to to's style.
func substitute(p, from, to string) (string, bool) {
	if from == "" || p == "" {
		return "", false
	}
	fromWin := windowsStyle(from)
	fsep, fold := "/", false
	if fromWin {
		fsep, fold = `\`, true
		p = strings.ReplaceAll(p, "/", `\`)
		from = strings.ReplaceAll(from, "/", `\`)
	}
	from = strings.TrimRight(from, fsep) // "" for the root directory
	var rest string
	switch {
	case equal(p, from, fold):
		rest = ""
	case len(p) > len(from) && equal(p[:len(from)], from, fold) && p[len(from):len(from)+1] == fsep:
		rest = p[len(from)+1:]
	default:
		return "", false
	}
	tsep := "/"
	if windowsStyle(to) {
		tsep = `\`
	}
	if fsep != tsep {
		rest = strings.ReplaceAll(rest, fsep, tsep)
	}
	to = strings.TrimRight(to, tsep)
	if rest == "" {
		if to == "" {
			return tsep, true
		}
		return to, true
	}
	return to + tsep + rest, true
}

func equal(a, b string, fold bool) bool {
	if fold {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// resolve makes relative local directories absolute against dir (the
// workspace) and checks that every entry has both sides.
func (ps Paths) resolve(dir string) (Paths, error) {
	out := make(Paths, 0, len(ps))
	for i, m := range ps {
		if strings.TrimSpace(m.From) == "" || strings.TrimSpace(m.To) == "" {
			return nil, errcat.User.Newf("substitutePath[%d]: both from (the local directory) and to (the remote one) are required", i)
		}
		if dir != "" && !windowsStyle(m.From) && !filepath.IsAbs(m.From) {
			m.From = filepath.Join(dir, m.From)
		}
		out = append(out, m)
	}
	return out, nil
}

// direction of a translation.
type direction bool

const (
	toRemote direction = true
	toLocal  direction = false
)

// mightHoldSource is a cheap test before a message is decoded for
// translation: only messages mentioning a source can hold a path.
func mightHoldSource(body []byte) bool {
	return bytes.Contains(body, []byte(`"source"`)) || bytes.Contains(body, []byte(`"sources"`)) ||
		bytes.Contains(body, []byte(`"location"`))
}

// translate rewrites the paths of every Source in the message's arguments
// (requests) or body (responses, events). It returns the message unchanged,
// byte for byte, when no path changed.
func (ps Paths) translate(body []byte, dir direction) []byte {
	if len(ps) == 0 || !mightHoldSource(body) {
		return body
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var msg map[string]any
	if err := dec.Decode(&msg); err != nil {
		return body
	}
	key := "body"
	if msg["type"] == "request" {
		key = "arguments"
	}
	v, ok := msg[key]
	if !ok {
		return body
	}
	if !ps.walk(v, dir, false) {
		return body
	}
	out, err := json.Marshal(msg)
	if err != nil {
		return body
	}
	return out
}

// walk translates Source objects in v: objects under the keys "source" and
// "location" and in lists under "sources". inSource says v is such a place.
func (ps Paths) walk(v any, dir direction, inSource bool) bool {
	changed := false
	switch v := v.(type) {
	case map[string]any:
		if inSource {
			if p, ok := v["path"].(string); ok && p != "" {
				np := ps.ToLocal(p)
				if dir == toRemote {
					np = ps.ToRemote(p)
				}
				if np != p {
					v["path"] = np
					changed = true
				}
			}
		}
		for k, child := range v {
			src := k == "source" || k == "location" || k == "sources"
			if ps.walk(child, dir, src) {
				changed = true
			}
		}
	case []any:
		for _, child := range v {
			if ps.walk(child, dir, inSource) {
				changed = true
			}
		}
	}
	return changed
}
