package routes

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPool(t *testing.T) {
	p, err := NewPool(DefaultFakeRange(), FailWhenFull)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := p.Addr("db.vpc.internal")
	b, _ := p.Addr("cache.vpc.internal")
	if a != netip.MustParseAddr("198.18.0.1") || b != netip.MustParseAddr("198.18.0.2") {
		t.Fatalf("addresses %v %v, want 198.18.0.1 198.18.0.2", a, b)
	}
	if again, _ := p.Addr("db.vpc.internal"); again != a {
		t.Errorf("not stable: %v then %v", a, again)
	}
	lookups := []struct {
		addr, name string
		ok         bool
	}{
		{"198.18.0.1", "db.vpc.internal", true},
		{"::ffff:198.18.0.2", "cache.vpc.internal", true},
		{"198.19.255.200", "", false}, // in the prefix, not handed out
		{"10.0.0.1", "", false},       // outside
	}
	for _, tt := range lookups {
		if n, ok := p.Name(netip.MustParseAddr(tt.addr)); n != tt.name || ok != tt.ok {
			t.Errorf("Name(%s) = %q %v, want %q %v", tt.addr, n, ok, tt.name, tt.ok)
		}
	}
	contains := map[string]bool{"198.18.0.0": true, "198.19.255.255": true, "::ffff:198.18.0.1": true, "198.20.0.0": false, "10.0.0.1": false}
	for s, want := range contains {
		if got := p.Contains(netip.MustParseAddr(s)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", s, got, want)
		}
	}
	if p.Prefix() != netip.MustParsePrefix("198.18.0.0/15") {
		t.Errorf("Prefix() = %v", p.Prefix())
	}
}

// A /30 has two usable addresses: the third name fails or recycles the first.
func TestPoolFull(t *testing.T) {
	tests := []struct {
		full     WhenFull
		wantErr  bool
		wantAddr string
	}{
		{FailWhenFull, true, ""},
		{RecycleOldest, false, "192.0.2.9"},
	}
	for _, tt := range tests {
		p, err := NewPool(netip.MustParsePrefix("192.0.2.10/30"), tt.full)
		if err != nil {
			t.Fatal(err)
		}
		x, _ := p.Addr("x")
		y, _ := p.Addr("y")
		if x != netip.MustParseAddr("192.0.2.9") || y != netip.MustParseAddr("192.0.2.10") {
			t.Fatalf("small pool: %v %v", x, y)
		}
		z, err := p.Addr("z")
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "exhausted") {
				t.Errorf("full pool: %v, %v; want an exhausted error", z, err)
			}
			if again, err := p.Addr("x"); err != nil || again != x {
				t.Errorf("a known name in a full pool: %v, %v", again, err)
			}
			continue
		}
		if err != nil || z.String() != tt.wantAddr {
			t.Fatalf("recycled: %v, %v; want %s", z, err, tt.wantAddr)
		}
		if n, _ := p.Name(z); n != "z" {
			t.Errorf("recycled address names %q", n)
		}
		if a, _ := p.Addr("x"); a == z {
			t.Error("recycled name still mapped to its old address")
		}
	}
}

func TestNewPoolRefuses(t *testing.T) {
	for _, bad := range []netip.Prefix{{}, netip.MustParsePrefix("2001:db8::/64"), netip.MustParsePrefix("10.0.0.0/31"), netip.MustParsePrefix("10.0.0.0/4")} {
		if _, err := NewPool(bad, FailWhenFull); err == nil || !strings.Contains(err.Error(), "IPv4 prefix") {
			t.Errorf("NewPool(%v) = %v, want an error", bad, err)
		}
	}
}
