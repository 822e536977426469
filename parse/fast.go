package parse

// DecodeFast decodes frame with a single-pass scanner that accepts only the
// canonical layouts: a bare event or {"stream":"...","data":EVENT} with no
// whitespace and no escapes, and for aggTrade the futures key order
// e,E,a,s,p,q,f,l,T,m or the spot order e,E,s,a,p,q,f,l,T,m,M. Other kinds are
// named from the "e" value (or, for a spot bookTicker, from the stream name)
// without reading the rest of the frame. Anything else returns
// (KindOther, ErrNotCanonical), which is not a failure: hand the frame to a
// general engine. dst is written only when the result is (KindAggTrade, nil).
// DecodeFast allocates nothing and may be called from any goroutine.
func DecodeFast(dst *Trade, frame []byte, syms *Symbols) (Kind, error) {
	b := frame
	i := 0
	var stream []byte
	envelope := hasPrefixAt(b, 0, `{"stream":"`)
	if envelope {
		j := scanPlainString(b, 11)
		if j < 0 || !hasPrefixAt(b, j+1, `,"data":`) {
			return KindOther, ErrNotCanonical
		}
		stream = b[11:j]
		i = j + 9
		if !hasPrefixAt(b, i, `{"e":"`) {
			return skipFlatFast(b, i, stream)
		}
	} else if !hasPrefixAt(b, 0, `{"e":"`) {
		return KindOther, ErrNotCanonical
	}
	i += 6
	j := scanPlainString(b, i)
	if j < 0 {
		return KindOther, ErrNotCanonical
	}
	if kind := kindOfEvent(b[i:j]); kind != KindAggTrade {
		return kind, nil
	}
	return decodeAggTradeFast(dst, b, j+1, envelope, syms)
}

// decodeAggTradeFast scans the aggTrade event from b[i:], which follows
// `{"e":"aggTrade"`.
func decodeAggTradeFast(dst *Trade, b []byte, i int, envelope bool, syms *Symbols) (Kind, error) {
	var o object
	var ok bool
	if !hasPrefixAt(b, i, `,"E":`) {
		return KindOther, ErrNotCanonical
	}
	if i, ok = o.intFast(b, i+5, fieldE); !ok {
		return KindOther, ErrNotCanonical
	}
	switch {
	case hasPrefixAt(b, i, `,"a":`): // futures
		if i, ok = o.intFast(b, i+5, fieldA); !ok || !hasPrefixAt(b, i, `,"s":"`) {
			return KindOther, ErrNotCanonical
		}
		if i, ok = o.stringFast(b, i+6, fieldS); !ok {
			return KindOther, ErrNotCanonical
		}
	case hasPrefixAt(b, i, `,"s":"`): // spot
		if i, ok = o.stringFast(b, i+6, fieldS); !ok || !hasPrefixAt(b, i, `,"a":`) {
			return KindOther, ErrNotCanonical
		}
		if i, ok = o.intFast(b, i+5, fieldA); !ok {
			return KindOther, ErrNotCanonical
		}
	default:
		return KindOther, ErrNotCanonical
	}
	if !hasPrefixAt(b, i, `,"p":"`) {
		return KindOther, ErrNotCanonical
	}
	if i, ok = o.stringFast(b, i+6, fieldP); !ok || !hasPrefixAt(b, i, `,"q":"`) {
		return KindOther, ErrNotCanonical
	}
	if i, ok = o.stringFast(b, i+6, fieldQ); !ok || !hasPrefixAt(b, i, `,"f":`) {
		return KindOther, ErrNotCanonical
	}
	if i, ok = o.intFast(b, i+5, fieldF); !ok || !hasPrefixAt(b, i, `,"l":`) {
		return KindOther, ErrNotCanonical
	}
	if i, ok = o.intFast(b, i+5, fieldL); !ok || !hasPrefixAt(b, i, `,"T":`) {
		return KindOther, ErrNotCanonical
	}
	if i, ok = o.intFast(b, i+5, fieldT); !ok || !hasPrefixAt(b, i, `,"m":`) {
		return KindOther, ErrNotCanonical
	}
	if o.m, i, ok = boolFast(b, i+5); !ok {
		return KindOther, ErrNotCanonical
	}
	o.seen |= 1 << fieldM
	o.typed |= 1 << fieldM
	if hasPrefixAt(b, i, `,"M":`) {
		if _, i, ok = boolFast(b, i+5); !ok {
			return KindOther, ErrNotCanonical
		}
	}
	end := i + 1
	if envelope {
		end++
	}
	if end != len(b) || b[i] != '}' || envelope && b[i+1] != '}' {
		return KindOther, ErrNotCanonical
	}
	return KindAggTrade, build(dst, &o, syms, 0, true, true)
}

// intFast scans a JSON integer without sign or leading zero at b[i:].
func (o *object) intFast(b []byte, i, field int) (int, bool) {
	start := i
	var v int64
	for i < len(b) {
		c := b[i] - '0'
		if c > 9 {
			break
		}
		v = v*10 + int64(c)
		i++
	}
	n := i - start
	if n == 0 || n > 1 && b[start] == '0' {
		return i, false
	}
	if n >= 19 { // may overflow: let parseInt decide
		o.setInt(field, b[start:i])
		return i, true
	}
	o.seen |= 1 << field
	o.typed |= 1 << field
	o.ints[field] = v
	return i, true
}

// stringFast scans string contents at b[i:] up to the closing quote and
// returns the index after it.
func (o *object) stringFast(b []byte, i, field int) (int, bool) {
	j := scanPlainString(b, i)
	if j < 0 {
		return i, false
	}
	o.setString(field, b[i:j])
	return j + 1, true
}

// scanPlainString returns the index of the quote closing the string whose
// contents start at b[i], or -1 when the string holds an escape, a control
// character or a non-ASCII byte, or is not closed.
func scanPlainString(b []byte, i int) int {
	for ; i < len(b); i++ {
		if c := b[i]; !plainByte[c] {
			if c == '"' {
				return i
			}
			return -1
		}
	}
	return -1
}

// plainByte marks the bytes a canonical string may hold: printable ASCII
// except the quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func boolFast(b []byte, i int) (v bool, next int, ok bool) {
	if hasPrefixAt(b, i, "true") {
		return true, i + 4, true
	}
	if hasPrefixAt(b, i, "false") {
		return false, i + 5, true
	}
	return false, i, false
}

func hasPrefixAt(b []byte, i int, p string) bool {
	return i >= 0 && len(b)-i >= len(p) && string(b[i:i+len(p)]) == p
}

// skipFlatFast handles an enveloped event that does not start with "e": a
// flat object of plain strings and unsigned integers without an "e" key (the
// spot bookTicker), followed by the closing braces and the end of the frame.
func skipFlatFast(b []byte, i int, stream []byte) (Kind, error) {
	if i >= len(b) || b[i] != '{' || !containsBookTicker(stream) {
		return KindOther, ErrNotCanonical
	}
	i++
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return KindOther, ErrNotCanonical
			}
			j := scanPlainString(b, i+1)
			if j < 0 || j == i+2 && b[i+1] == 'e' || j+1 >= len(b) || b[j+1] != ':' {
				return KindOther, ErrNotCanonical
			}
			i = j + 2
			if i >= len(b) {
				return KindOther, ErrNotCanonical
			}
			if b[i] == '"' {
				if j = scanPlainString(b, i+1); j < 0 {
					return KindOther, ErrNotCanonical
				}
				i = j + 1
			} else {
				start := i
				for i < len(b) && isDigit(b[i]) {
					i++
				}
				if i == start || i-start > 1 && b[start] == '0' {
					return KindOther, ErrNotCanonical
				}
			}
			if i >= len(b) {
				return KindOther, ErrNotCanonical
			}
			if b[i] == '}' {
				i++
				break
			}
			if b[i] != ',' {
				return KindOther, ErrNotCanonical
			}
			i++
		}
	}
	if i+1 != len(b) || b[i] != '}' {
		return KindOther, ErrNotCanonical
	}
	return KindBookTicker, nil
}

func containsBookTicker(stream []byte) bool {
	const s = "@bookTicker"
	for i := 0; i+len(s) <= len(stream); i++ {
		if stream[i] == '@' && string(stream[i:i+len(s)]) == s {
			return true
		}
	}
	return false
}
