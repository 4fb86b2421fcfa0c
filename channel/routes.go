package channel

import (
	"fmt"
	"net/netip"
	"strings"
)

// Routes says which targets go through the tunnel: IP addresses inside one of
// CIDRs, and names equal to or under one of Domains ("vpc.internal" matches
// "vpc.internal" and "db.vpc.internal", not "notvpc.internal").
type Routes struct {
	CIDRs   []netip.Prefix
	Domains []string // domain suffixes, e.g. "vpc.internal"
}

// Match reports whether host goes through the tunnel. host is an IP literal
// (brackets and an IPv6 zone are allowed) or a name; names are compared with
// Domains case-insensitively, ignoring a trailing dot. Names are never
// resolved, so a name matches only through Domains.
func (r Routes) Match(host string) bool {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.WithZone("").Unmap()
		for _, p := range r.CIDRs {
			if p.Contains(ip) {
				return true
			}
		}
		return false
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	for _, d := range r.Domains {
		d = strings.TrimSuffix(strings.TrimPrefix(d, "."), ".")
		if d == "" || len(d) > len(host) {
			continue
		}
		if len(d) == len(host) {
			if strings.EqualFold(host, d) {
				return true
			}
			continue
		}
		if host[len(host)-len(d)-1] == '.' && strings.EqualFold(host[len(host)-len(d):], d) {
			return true
		}
	}
	return false
}

// ParseRoutes parses the routes of a proxy as written in tether.yaml. A CIDR
// entry may also be a single address ("10.1.2.3" means 10.1.2.3/32). A domain
// entry may start with "." or "*." (both mean the same suffix). Entries are
// normalised: prefixes masked, domains lower-case without the trailing dot.
// The error names the first bad entry.
func ParseRoutes(cidrs, domains []string) (Routes, error) {
	var r Routes
	for _, s := range cidrs {
		p, err := parseCIDR(strings.TrimSpace(s))
		if err != nil {
			return Routes{}, fmt.Errorf("route cidr %q: %w", s, err)
		}
		r.CIDRs = append(r.CIDRs, p)
	}
	for _, s := range domains {
		d, err := parseDomain(s)
		if err != nil {
			return Routes{}, fmt.Errorf("route domain %q: %w", s, err)
		}
		r.Domains = append(r.Domains, d)
	}
	return r, nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("empty")
	}
	if !strings.Contains(s, "/") {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not an address or a CIDR (like 10.0.0.0/16)")
		}
		if ip.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("zones are not allowed")
		}
		ip = ip.Unmap()
		return netip.PrefixFrom(ip, ip.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a CIDR (like 10.0.0.0/16)")
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func parseDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSpace(s))
	d = strings.TrimPrefix(d, "*.")
	d = strings.TrimPrefix(d, ".")
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", fmt.Errorf("empty")
	}
	if len(d) > 253 {
		return "", fmt.Errorf("longer than 253 characters")
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return "", fmt.Errorf("an address belongs in cidrs")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return "", fmt.Errorf("empty label")
		}
		if len(label) > 63 {
			return "", fmt.Errorf("label %q longer than 63 characters", label)
		}
		for i := 0; i < len(label); i++ {
			if !isHostByte(label[i]) {
				return "", fmt.Errorf("character %q not allowed in a domain name", label[i])
			}
		}
	}
	return d, nil
}

// isHostByte reports whether b may appear in a host name label. Underscore is
// allowed because service names in clusters use it.
func isHostByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_'
}
