package routes

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRoutesMatch(t *testing.T) {
	r := Routes{
		CIDRs: []netip.Prefix{
			netip.MustParsePrefix("10.10.0.0/16"),
			netip.MustParsePrefix("192.168.7.5/32"),
			netip.MustParsePrefix("fd00:abcd::/32"),
		},
		Domains: []string{"vpc.internal", "Svc.Cluster.Local.", ".corp.example"},
	}
	tests := []struct {
		host string
		want bool
	}{
		{"10.10.0.1", true},
		{"10.10.255.255", true},
		{"10.11.0.1", false},
		{"10.1.0.1", false},
		{"192.168.7.5", true},
		{"192.168.7.6", false},
		{"::ffff:10.10.3.4", true}, // IPv4-mapped
		{"[::ffff:10.10.3.4]", true},
		{"fd00:abcd::1", true},
		{"[fd00:abcd::1]", true},
		{"fd00:abcd::1%eth0", true},
		{"fd00:abce::1", false},
		{"::1", false},
		{"127.0.0.1", false},
		{"vpc.internal", true},
		{"db.vpc.internal", true},
		{"a.b.vpc.internal", true},
		{"DB.VPC.Internal", true},
		{"db.vpc.internal.", true},
		{"vpc.internal.", true},
		{"notvpc.internal", false},
		{"vpc.internal.evil.com", false},
		{"vpcinternal", false},
		{"internal", false},
		{"orders.svc.cluster.local", true},
		{"svc.cluster.local", true},
		{"x.corp.example", true},
		{"corp.example", true},
		{"xcorp.example", false},
		{"", false},
		{".", false},
		{"10.10.0.1.vpc.internal", true},
		{"10.10.0.1.example.com", false},
	}
	for _, tt := range tests {
		if got := r.Match(tt.host); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	if (Routes{}).Match("db.vpc.internal") || (Routes{Domains: []string{""}}).Match("anything") {
		t.Error("empty routes or an empty domain matched")
	}
}

func TestParse(t *testing.T) {
	r, err := Parse(
		[]string{"10.10.0.0/16", "10.20.1.7/8", "192.168.1.1", "fd00::/8", " 172.16.0.0/12 "},
		[]string{"VPC.internal.", "*.svc.cluster.local", ".corp.example", "my_svc.k8s"},
	)
	if err != nil {
		t.Fatal(err)
	}
	wantCIDRs := []string{"10.10.0.0/16", "10.0.0.0/8", "192.168.1.1/32", "fd00::/8", "172.16.0.0/12"}
	for i, p := range r.CIDRs {
		if p.String() != wantCIDRs[i] {
			t.Errorf("CIDRs[%d] = %s, want %s", i, p, wantCIDRs[i])
		}
	}
	wantDomains := []string{"vpc.internal", "svc.cluster.local", "corp.example", "my_svc.k8s"}
	if strings.Join(r.Domains, ",") != strings.Join(wantDomains, ",") {
		t.Errorf("Domains = %q, want %q", r.Domains, wantDomains)
	}
	if !r.Match("10.99.0.1") || !r.Match("a.svc.cluster.local") || r.Match("192.168.1.2") {
		t.Error("parsed routes do not match as expected")
	}

	bad := []struct {
		cidrs, domains []string
		entry          string
	}{
		{[]string{"10.10.0.0/16", "10.10.0.0/33"}, nil, `"10.10.0.0/33"`},
		{[]string{"vpc.internal"}, nil, `"vpc.internal"`},
		{[]string{""}, nil, `route cidr ""`},
		{[]string{"fe80::1%eth0"}, nil, `"fe80::1%eth0"`},
		{nil, []string{"ok.internal", "bad domain"}, `"bad domain"`},
		{nil, []string{"a..b"}, `"a..b"`},
		{nil, []string{""}, `route domain ""`},
		{nil, []string{"10.1.2.3"}, `"10.1.2.3"`},
		{nil, []string{"host:80"}, `"host:80"`},
		{nil, []string{strings.Repeat("a", 64) + ".x"}, "longer than 63"},
	}
	for _, tt := range bad {
		_, err := Parse(tt.cidrs, tt.domains)
		if err == nil || !strings.Contains(err.Error(), tt.entry) {
			t.Errorf("Parse(%q, %q) error = %v, want one naming %s", tt.cidrs, tt.domains, err, tt.entry)
		}
	}
}

func TestMatchAddrAndName(t *testing.T) {
	r := Routes{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/16")}, Domains: []string{"vpc.internal"}}
	addrs := []struct {
		ip   string
		want bool
	}{
		{"10.10.1.2", true},
		{"::ffff:10.10.1.2", true},
		{"10.11.1.2", false},
		{"fe80::1%eth0", false},
	}
	for _, tt := range addrs {
		if got := r.MatchAddr(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("MatchAddr(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	names := []struct {
		name string
		want bool
	}{
		{"db.vpc.internal", true},
		{"DB.vpc.internal.", true},
		{"vpc.internal", true},
		{"notvpc.internal", false},
		// A name is never read as an address: only Domains decide.
		{"10.10.1.2", false},
		{"", false},
	}
	for _, tt := range names {
		if got := r.MatchName(tt.name); got != tt.want {
			t.Errorf("MatchName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCheckFakeRange(t *testing.T) {
	fake := netip.MustParsePrefix(DefaultFakeCIDR)
	tests := []struct {
		name    string
		r       Routes
		wantErr bool
	}{
		{"disjoint", Routes{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Domains: []string{"x.test"}}, false},
		{"overlap with domains", Routes{CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16")}, Domains: []string{"x.test"}}, true},
		{"route all with domains", Routes{CIDRs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, Domains: []string{"x.test"}}, true},
		{"route all without domains", Routes{CIDRs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, false},
	}
	for _, tt := range tests {
		err := tt.r.CheckFakeRange(fake)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, want error %v", tt.name, err, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "overlaps") {
			t.Errorf("%s: err = %v, want one saying overlaps", tt.name, err)
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"db.vpc.internal", true},
		{"db.vpc.internal.", true},
		{"my_svc.k8s", true},
		{"a", true},
		{strings.Repeat("a", 63) + ".x", true},
		{strings.Repeat("a", 64) + ".x", false},
		{strings.Repeat("a.", 126) + "ab", false}, // 254 bytes
		{"", false},
		{".", false},
		{"a..b", false},
		{".a", false},
		{"a.b..", false},
		{"host:80", false},
		{"a b", false},
		{"a/b", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.name); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNormName(t *testing.T) {
	for in, want := range map[string]string{"DB.Vpc.Internal.": "db.vpc.internal", "a": "a", "": "", ".": ""} {
		if got := NormName(in); got != want {
			t.Errorf("NormName(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse: parsed routes are normalised (parsing them again gives the same
// routes) and every parsed domain matches itself and its subdomains.
func FuzzParse(f *testing.F) {
	f.Add("10.0.0.0/8", "vpc.internal")
	f.Add("::ffff:10.1.2.3/104", "*.Svc.Cluster.Local.")
	f.Add("fe80::1%eth0", "a..b")
	f.Fuzz(func(t *testing.T, cidr, domain string) {
		r, err := Parse([]string{cidr}, []string{domain})
		if err != nil {
			return
		}
		again, err := Parse([]string{r.CIDRs[0].String()}, r.Domains)
		if err != nil || again.CIDRs[0] != r.CIDRs[0] || again.Domains[0] != r.Domains[0] {
			t.Fatalf("Parse(%q, %q) = %v, parsed again: %v, %v", cidr, domain, r, again, err)
		}
		d := r.Domains[0]
		if !ValidName(d) || !r.Match(d) || !r.MatchName("x."+d) || !r.MatchAddr(r.CIDRs[0].Addr()) {
			t.Fatalf("Parse(%q, %q) = %v does not match itself", cidr, domain, r)
		}
	})
}
