// Package routes says what goes through a tunnel — address prefixes and DNS
// domain suffixes — and hands out the fake addresses that stand for private
// names under those suffixes on the app's side (Pool).
package routes

import (
	"errors"
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

// Parse parses the routes of a proxy as written in tether.yaml. A CIDR entry
// may also be a single address ("10.1.2.3" means 10.1.2.3/32). A domain entry
// may start with "." or "*." (both mean the same suffix). Entries are
// normalised: prefixes masked, domains lower-case without the trailing dot.
// The error names the first bad entry.
func Parse(cidrs, domains []string) (Routes, error) {
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

// Match reports whether host goes through the tunnel. host is an IP literal
// (brackets and an IPv6 zone are allowed) or a name; an IP literal is checked
// with MatchAddr, anything else with MatchName. Names are never resolved, so
// a name matches only through Domains.
func (r Routes) Match(host string) bool {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return r.MatchAddr(ip)
	}
	return r.MatchName(host)
}

// MatchAddr reports whether ip is inside one of CIDRs (an IPv4-mapped IPv6
// address counts as IPv4; a zone is ignored).
func (r Routes) MatchAddr(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap()
	for _, p := range r.CIDRs {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// MatchName reports whether name is equal to or under one of Domains,
// case-insensitively, ignoring a trailing dot (on name and on the domains, so
// that hand-built Routes work too).
func (r Routes) MatchName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return false
	}
	for _, d := range r.Domains {
		d = strings.TrimSuffix(strings.TrimPrefix(d, "."), ".")
		if d == "" || len(d) > len(name) {
			continue
		}
		if len(d) == len(name) {
			if strings.EqualFold(name, d) {
				return true
			}
			continue
		}
		if name[len(name)-len(d)-1] == '.' && strings.EqualFold(name[len(name)-len(d):], d) {
			return true
		}
	}
	return false
}

// CheckFakeRange reports an error if a route prefix overlaps fake, the range
// of the fake addresses handed out for names under Domains: a connect to such
// an address would be ambiguous. Without Domains no fake address is handed
// out, so any overlap (e.g. a route-all 0.0.0.0/0) is fine.
func (r Routes) CheckFakeRange(fake netip.Prefix) error {
	if len(r.Domains) == 0 {
		return nil
	}
	for _, p := range r.CIDRs {
		if p.Overlaps(fake) {
			return fmt.Errorf("route %s overlaps the fake address range %s used for private names", p, fake)
		}
	}
	return nil
}

// NormName is the form names are compared and stored in: lower case, without
// the trailing dot.
func NormName(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// ValidName reports whether name is a plausible DNS name: dot-separated labels
// of letters, digits, '-' and '_' (service names in clusters use it), each 1
// to 63 bytes, 253 bytes at most, with an optional trailing dot. It keeps ':'
// and other separators out of "host:port".
func ValidName(name string) bool {
	return checkName(strings.TrimSuffix(name, ".")) == nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty")
	}
	if !strings.Contains(s, "/") {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not an address or a CIDR (like 10.0.0.0/16)")
		}
		if ip.Zone() != "" {
			return netip.Prefix{}, errors.New("zones are not allowed")
		}
		ip = ip.Unmap()
		return netip.PrefixFrom(ip, ip.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not a CIDR (like 10.0.0.0/16)")
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
		return "", errors.New("empty")
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return "", errors.New("an address belongs in cidrs")
	}
	if err := checkName(d); err != nil {
		return "", err
	}
	return d, nil
}

// checkName says what makes name (without a trailing dot) not a DNS name.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > 253 {
		return errors.New("longer than 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q longer than 63 characters", label)
		}
		for i := 0; i < len(label); i++ {
			if !isNameByte(label[i]) {
				return fmt.Errorf("character %q not allowed in a domain name", label[i])
			}
		}
	}
	return nil
}

func isNameByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_'
}
