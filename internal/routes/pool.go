package routes

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
)

// DefaultFakeCIDR is where the fake addresses for private names come from
// by default: the RFC 2544 benchmarking range, never a real destination.
const DefaultFakeCIDR = "198.18.0.0/15"

// DefaultFakeRange is DefaultFakeCIDR as a prefix.
func DefaultFakeRange() netip.Prefix { return netip.MustParsePrefix(DefaultFakeCIDR) }

// WhenFull says what a Pool does when every address has been handed out.
type WhenFull int

const (
	// FailWhenFull makes Addr return an error for a new name: for clients
	// that keep an address for as long as they like (a JVM caches lookups).
	FailWhenFull WhenFull = iota
	// RecycleOldest hands the oldest allocation's address to the new name:
	// for a resolver whose answers have a short TTL.
	RecycleOldest
)

// Pool hands out fake IPv4 addresses from a prefix, one per private name,
// and maps them back. A name keeps its address while it is in the pool.
// The prefix's first and last addresses are never handed out. It is safe
// for concurrent use.
type Pool struct {
	prefix netip.Prefix
	full   WhenFull
	first  netip.Addr // the first usable address
	size   uint64     // number of usable addresses

	mu     sync.Mutex
	next   uint64 // offset of the next allocation from first
	byName map[string]netip.Addr
	byAddr map[netip.Addr]string
}

// NewPool returns a pool over an IPv4 prefix between /8 and /30.
func NewPool(prefix netip.Prefix, full WhenFull) (*Pool, error) {
	p := prefix.Masked()
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() > 30 || p.Bits() < 8 {
		return nil, fmt.Errorf("fake address range %s: need an IPv4 prefix between /8 and /30", prefix)
	}
	return &Pool{
		prefix: p,
		full:   full,
		first:  p.Addr().Next(),
		size:   uint64(1)<<(32-p.Bits()) - 2,
		byName: make(map[string]netip.Addr),
		byAddr: make(map[netip.Addr]string),
	}, nil
}

// Prefix is the pool's (masked) prefix.
func (p *Pool) Prefix() netip.Prefix { return p.prefix }

// Contains reports whether a is in the pool's prefix (an IPv4-mapped IPv6
// address counts as IPv4).
func (p *Pool) Contains(a netip.Addr) bool { return p.prefix.Contains(a.Unmap()) }

// Addr returns the address of name (compared as given: normalise it first,
// see NormName), allocating one if needed. It fails only with FailWhenFull,
// once every address has been handed out.
func (p *Pool) Addr(name string) (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.byName[name]; ok {
		return a, nil
	}
	if p.next == p.size {
		if p.full == FailWhenFull {
			return netip.Addr{}, fmt.Errorf("fake address range %s exhausted", p.prefix)
		}
		p.next = 0
	}
	b := p.first.As4()
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+uint32(p.next))
	a := netip.AddrFrom4(b)
	p.next++
	if old, ok := p.byAddr[a]; ok {
		delete(p.byName, old)
	}
	p.byName[name] = a
	p.byAddr[a] = name
	return a, nil
}

// Name returns the name a handed-out address stands for.
func (p *Pool) Name(a netip.Addr) (string, bool) {
	a = a.Unmap()
	if !p.prefix.Contains(a) {
		return "", false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.byAddr[a]
	return n, ok
}
