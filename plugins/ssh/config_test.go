package ssh

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSSHConfigAlias(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config")
	os.WriteFile(cfgFile, []byte(`
Host dev-bastion
    HostName 10.200.0.2
    User dev
    Port 2222
    IdentityFile ~/.ssh/dev_key
    ProxyJump jumper

Host jumper
    HostName jump.example.com
    User hop
    Port 2200

Host *
    User fallback
`), 0o600)
	home, _ := os.UserHomeDir()

	r, err := resolve(Config{Host: "dev-bastion", SSHConfigFile: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	want := hop{Host: "10.200.0.2", Port: 2222, User: "dev", IdentityFiles: []string{"~/.ssh/dev_key"}}
	if !reflect.DeepEqual(r.target, want) {
		t.Errorf("target %+v, want %+v", r.target, want)
	}
	if len(r.jumps) != 1 || r.jumps[0].Host != "jump.example.com" || r.jumps[0].Port != 2200 || r.jumps[0].User != "hop" {
		t.Errorf("jumps %+v", r.jumps)
	}
	if r.KnownHostsFile != filepath.Join(home, ".ssh", "known_hosts") || r.PoolSize != 4 || r.StrictHostKeyChecking != StrictYes {
		t.Errorf("defaults: %+v", r.Config)
	}

	// Explicit settings win over ssh_config.
	r, err = resolve(Config{Host: "dev-bastion", Port: 22, User: "me", ProxyJump: "none", SSHConfigFile: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	if r.target.Port != 22 || r.target.User != "me" || len(r.jumps) != 0 {
		t.Errorf("explicit: %+v %+v", r.target, r.jumps)
	}

	// Unknown host: wildcard settings only.
	r, err = resolve(Config{Host: "10.1.2.3", SSHConfigFile: cfgFile, ProxyJump: "a@b:23,[::1]:2022"})
	if err != nil {
		t.Fatal(err)
	}
	if r.target.Host != "10.1.2.3" || r.target.Port != 22 || r.target.User != "fallback" {
		t.Errorf("plain host: %+v", r.target)
	}
	if len(r.jumps) != 2 || r.jumps[0].Host != "b" || r.jumps[0].Port != 23 || r.jumps[0].User != "a" || r.jumps[1].Host != "::1" || r.jumps[1].Port != 2022 {
		t.Errorf("jumps %+v", r.jumps)
	}
	if _, err := resolve(Config{Host: "x", SSHConfigFile: cfgFile, StrictHostKeyChecking: "no"}); err == nil {
		t.Error("strictHostKeyChecking no accepted")
	}
}

func TestParseJump(t *testing.T) {
	tests := []struct {
		in         string
		user, host string
		port       int
		ok         bool
	}{
		{"host", "", "host", 0, true},
		{"u@host:2222", "u", "host", 2222, true},
		{"u@[fe80::1]:22", "u", "fe80::1", 22, true},
		{"fe80::1", "", "fe80::1", 0, true},
		{"ssh://u@h:1", "u", "h", 1, true},
		{"u@", "", "", 0, false},
		{"h:notaport", "", "", 0, false},
		{"[::1", "", "", 0, false},
	}
	for _, tt := range tests {
		u, h, p, err := parseJump(tt.in)
		if (err == nil) != tt.ok || u != tt.user || h != tt.host || p != tt.port {
			t.Errorf("parseJump(%q) = %q %q %d %v", tt.in, u, h, p, err)
		}
	}
}

func FuzzParseJump(f *testing.F) {
	for _, s := range []string{"host", "u@h:22", "u@[::1]:22", "ssh://a@b", "[", "@:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, h, p, err := parseJump(s)
		if err == nil && (h == "" || p < 0 || p > 65535) {
			t.Errorf("parseJump(%q) accepted host %q port %d", s, h, p)
		}
	})
}
