package calls

// ServerName returns the server name (SNI, RFC 6066) of a TLS ClientHello,
// given the payload of its first handshake record (without the 5-byte
// record header), or "" when there is none or the hello is malformed. A
// hello cut short is read as far as it goes.
func ServerName(b []byte) string {
	r := reader(b)
	typ, ok := r.u8()
	if !ok || typ != 1 { // client_hello
		return ""
	}
	n, ok := r.u24()
	if !ok {
		return ""
	}
	r = r.take(n)        // the hello, or what there is of it
	if !r.skip(2 + 32) { // legacy_version, random
		return ""
	}
	for _, lenBytes := range []int{1, 2, 1} { // session id, cipher suites, compression methods
		l, ok := r.uN(lenBytes)
		if !ok || !r.skip(l) {
			return ""
		}
	}
	l, ok := r.u16()
	if !ok {
		return ""
	}
	exts := r.take(l)
	for len(exts) >= 4 {
		typ, _ := exts.u16()
		el, _ := exts.u16()
		data := exts.take(el) // what there is, if cut short
		exts.skip(el)
		if typ != 0 { // server_name
			continue
		}
		list, ok := data.u16()
		if !ok {
			return ""
		}
		names := data.take(list)
		for len(names) >= 3 {
			nt, _ := names.u8()
			nl, _ := names.u16()
			if len(names) < nl {
				return ""
			}
			name := names[:nl]
			names = names[nl:]
			if nt == 0 && validName(name) {
				return string(name)
			}
		}
		return ""
	}
	return ""
}

// validName: a DNS name of letters, digits, '-', '_' and '.'.
func validName(b []byte) bool {
	if len(b) == 0 || len(b) > 253 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// reader is a cursor over big-endian TLS fields.
type reader []byte

func (r *reader) uN(n int) (int, bool) {
	if len(*r) < n {
		return 0, false
	}
	v := 0
	for _, c := range (*r)[:n] {
		v = v<<8 | int(c)
	}
	*r = (*r)[n:]
	return v, true
}

func (r *reader) u8() (int, bool)  { return r.uN(1) }
func (r *reader) u16() (int, bool) { return r.uN(2) }
func (r *reader) u24() (int, bool) { return r.uN(3) }

// skip advances n bytes; false if there are fewer.
func (r *reader) skip(n int) bool {
	if len(*r) < n {
		*r = nil
		return false
	}
	*r = (*r)[n:]
	return true
}

// take returns the next n bytes (fewer if cut short) without advancing.
func (r reader) take(n int) reader {
	if n > len(r) {
		n = len(r)
	}
	return r[:n]
}
