package debugadapter

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestPathsTranslate(t *testing.T) {
	unix := Paths{{From: "/home/me/app", To: "/build/app"}}
	tests := []struct {
		name   string
		paths  Paths
		local  string
		remote string
		// oneWay: only local -> remote is checked (not a bijection).
		oneWay bool
	}{
		{"file in the directory", unix, "/home/me/app/main.go", "/build/app/main.go", false},
		{"nested", unix, "/home/me/app/pkg/x/y.go", "/build/app/pkg/x/y.go", false},
		{"the directory itself", unix, "/home/me/app", "/build/app", false},
		{"sibling with the same prefix is outside", unix, "/home/me/apple/main.go", "/home/me/apple/main.go", false},
		{"outside every mapping", unix, "/usr/lib/go/src/fmt/print.go", "/usr/lib/go/src/fmt/print.go", false},
		{"trailing separators", Paths{{From: "/home/me/app/", To: "/build/app/"}}, "/home/me/app/main.go", "/build/app/main.go", false},
		{"first mapping wins", Paths{{From: "/home/me/app", To: "/a"}, {From: "/home/me", To: "/b"}}, "/home/me/app/x.go", "/a/x.go", false},
		{"second mapping", Paths{{From: "/home/me/app", To: "/a"}, {From: "/home/me", To: "/b"}}, "/home/me/lib/x.go", "/b/lib/x.go", false},
		{"windows IDE, linux remote", Paths{{From: `C:\src\app`, To: "/build/app"}}, `C:\src\app\pkg\main.go`, "/build/app/pkg/main.go", false},
		{"windows drive letter case", Paths{{From: `C:\src\app`, To: "/build/app"}}, `c:\SRC\app\main.go`, "/build/app/main.go", true},
		{"windows IDE with forward slashes", Paths{{From: "C:/src/app", To: "/build/app"}}, `C:\src\app\main.go`, "/build/app/main.go", true},
		{"linux IDE, windows remote", Paths{{From: "/home/me/app", To: `D:\build\app`}}, "/home/me/app/pkg/main.go", `D:\build\app\pkg\main.go`, false},
		{"root directory", Paths{{From: "/", To: "/remote/"}}, "/x/y.go", "/remote/x/y.go", false},
		{"no mappings", nil, "/home/me/app/main.go", "/home/me/app/main.go", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.paths.ToRemote(tt.local); got != tt.remote {
				t.Errorf("ToRemote(%q) = %q, want %q", tt.local, got, tt.remote)
			}
			if tt.oneWay {
				return
			}
			if got := tt.paths.ToLocal(tt.remote); got != tt.local {
				t.Errorf("ToLocal(%q) = %q, want %q", tt.remote, got, tt.local)
			}
		})
	}
}

func TestPathsResolve(t *testing.T) {
	ps, err := Paths{{From: "src", To: "/build/src"}, {From: "/abs", To: "/x"}}.resolve("/ws")
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].From != "/ws/src" || ps[1].From != "/abs" {
		t.Errorf("resolved %+v", ps)
	}
	if _, err := (Paths{{From: "/a"}}).resolve("/ws"); err == nil || !strings.Contains(err.Error(), "substitutePath[0]") {
		t.Errorf("missing to: %v", err)
	}
}

func TestTranslateMessages(t *testing.T) {
	ps := Paths{{From: "/local/app", To: "/remote/app"}}
	tests := []struct {
		name string
		dir  direction
		in   string
		want string // "" = unchanged, byte for byte
	}{
		{"setBreakpoints request", toRemote,
			`{"seq":3,"type":"request","command":"setBreakpoints","arguments":{"source":{"name":"main.go","path":"/local/app/main.go"},"breakpoints":[{"line":7}]}}`,
			`{"arguments":{"breakpoints":[{"line":7}],"source":{"name":"main.go","path":"/remote/app/main.go"}},"command":"setBreakpoints","seq":3,"type":"request"}`},
		{"breakpointLocations request", toRemote,
			`{"seq":4,"type":"request","command":"breakpointLocations","arguments":{"source":{"path":"/local/app/a.go"},"line":1}}`,
			`{"arguments":{"line":1,"source":{"path":"/remote/app/a.go"}},"command":"breakpointLocations","seq":4,"type":"request"}`},
		{"stackTrace response keeps vendor fields", toLocal,
			`{"seq":9,"type":"response","request_seq":5,"command":"stackTrace","success":true,"body":{"stackFrames":[{"id":1000,"name":"main.main","line":12,"column":0,"source":{"name":"main.go","path":"/remote/app/main.go"},"x-vendor":{"k":[1,2.50]}}],"totalFrames":1}}`,
			`{"body":{"stackFrames":[{"column":0,"id":1000,"line":12,"name":"main.main","source":{"name":"main.go","path":"/local/app/main.go"},"x-vendor":{"k":[1,2.50]}}],"totalFrames":1},"command":"stackTrace","request_seq":5,"seq":9,"success":true,"type":"response"}`},
		{"loadedSources response", toLocal,
			`{"seq":1,"type":"response","request_seq":2,"command":"loadedSources","success":true,"body":{"sources":[{"path":"/remote/app/a.go"},{"path":"/usr/go/src/fmt/print.go"}]}}`,
			`{"body":{"sources":[{"path":"/local/app/a.go"},{"path":"/usr/go/src/fmt/print.go"}]},"command":"loadedSources","request_seq":2,"seq":1,"success":true,"type":"response"}`},
		{"breakpoint event", toLocal,
			`{"seq":1,"type":"event","event":"breakpoint","body":{"reason":"changed","breakpoint":{"id":1,"verified":true,"source":{"path":"/remote/app/a.go"}}}}`,
			`{"body":{"breakpoint":{"id":1,"source":{"path":"/local/app/a.go"},"verified":true},"reason":"changed"},"event":"breakpoint","seq":1,"type":"event"}`},
		{"output event", toLocal,
			`{"seq":1,"type":"event","event":"output","body":{"output":"x\n","source":{"path":"/remote/app/a.go"},"line":3}}`,
			`{"body":{"line":3,"output":"x\n","source":{"path":"/local/app/a.go"}},"event":"output","seq":1,"type":"event"}`},
		{"disassemble location", toLocal,
			`{"seq":1,"type":"response","request_seq":1,"command":"disassemble","success":true,"body":{"instructions":[{"address":"0x1","instruction":"nop","location":{"path":"/remote/app/a.go"}}]}}`,
			`{"body":{"instructions":[{"address":"0x1","instruction":"nop","location":{"path":"/local/app/a.go"}}]},"command":"disassemble","request_seq":1,"seq":1,"success":true,"type":"response"}`},
		{"path outside the mapping: unchanged", toLocal,
			`{"seq":1,"type":"event","event":"output","body":{"output":"x","source":{"path":"/usr/go/src/fmt/print.go"}}}`, ""},
		{"no source at all: unchanged", toLocal,
			`{"seq":1, "type":"event","event":"stopped","body":{"reason":"breakpoint","threadId":1,"x":{"path":"/remote/app/a.go"}}}`, ""},
		{"a path key not in a source: unchanged", toRemote,
			`{"seq":1,"type":"request","command":"custom","arguments":{"path":"/local/app/a.go"}}`, ""},
		{"not JSON: unchanged", toLocal, `{"source": nope`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			got := ps.translate(in, tt.dir)
			if tt.want == "" {
				if &got[0] != &in[0] || len(got) != len(in) {
					t.Errorf("message was rewritten: %s", got)
				}
				return
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestSetTopLevelInt(t *testing.T) {
	tests := []struct{ in, key, want string }{
		{`{"seq":1,"type":"event"}`, "seq", `{"seq":42,"type":"event"}`},
		{`{ "type" : "event", "seq" : 7 , "body":{"seq":3}}`, "seq", `{ "type" : "event", "seq" : 42 , "body":{"seq":3}}`},
		{`{"body":{"seq":3},"x":"seq","seq":0}`, "seq", `{"body":{"seq":3},"x":"seq","seq":42}`},
		{`{"type":"event"}`, "seq", `{"type":"event"}`},
	}
	for _, tt := range tests {
		got, _ := setTopLevelInt([]byte(tt.in), tt.key, 42)
		if string(got) != tt.want {
			t.Errorf("setTopLevelInt(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestReadMessage(t *testing.T) {
	tests := []struct {
		name, in, want, err string
	}{
		{"plain", "Content-Length: 2\r\n\r\n{}", "{}", ""},
		{"other headers and case", "content-length:2\r\nContent-Type: application/vscode-jsonrpc\r\n\r\n{}", "{}", ""},
		{"HTTP", "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n", "", "not a DAP peer"},
		{"no length", "X-Foo: 1\r\n\r\n{}", "", "no Content-Length"},
		{"bad length", "Content-Length: -1\r\n\r\n", "", "bad Content-Length"},
		{"too big", "Content-Length: 99999999999\r\n\r\n", "", "over the"},
		{"short body", "Content-Length: 5\r\n\r\n{}", "", "unexpected EOF"},
		{"endless header", strings.Repeat("x", 5000), "", "header line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readMessage(newReader(strings.NewReader(tt.in)))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}

func FuzzReadMessage(f *testing.F) {
	f.Add([]byte("Content-Length: 2\r\n\r\n{}"))
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	f.Add([]byte("Content-Length: 3\r\nX: y\r\n\r\n{}}Content-Length: 0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newReader(bytes.NewReader(data))
		for range 10 {
			if _, err := readMessage(r); err != nil {
				return
			}
		}
	})
}

// FuzzTranslate: translation never breaks a valid message, and a message
// it changes stays valid JSON with the same top-level keys.
func FuzzTranslate(f *testing.F) {
	f.Add([]byte(`{"seq":1,"type":"event","event":"output","body":{"source":{"path":"/r/a.go"}}}`), true)
	f.Add([]byte(`{"seq":1,"type":"request","command":"source","arguments":{"source":{"path":"/l/a.go"},"sources":[{"path":"/l"}]}}`), false)
	ps := Paths{{From: "/l", To: "/r"}}
	f.Fuzz(func(t *testing.T, data []byte, local bool) {
		dir := toRemote
		if local {
			dir = toLocal
		}
		out := ps.translate(data, dir)
		if bytes.Equal(out, data) {
			return
		}
		var a, b map[string]json.RawMessage
		if err := json.Unmarshal(data, &a); err != nil {
			t.Fatalf("rewrote invalid input %q", data)
		}
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("rewrite is not JSON: %v: %s", err, out)
		}
		if len(a) != len(b) {
			t.Fatalf("keys changed: %s -> %s", data, out)
		}
		if n, ok := setTopLevelInt(out, "seq", 5); ok && !json.Valid(n) {
			t.Fatalf("seq splice broke %s", out)
		}
	})
}
