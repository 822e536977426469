package parse

import (
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting in the general path (simdjson-go stops at 128;
// encoding/json at 10000: Binance frames nest at most 4 deep).
const maxDepth = 10000

// decodeGeneral is the pure-Go general engine: it validates the whole frame
// as JSON, accepts any key order, whitespace and escapes, and applies the
// package semantics. It allocates only to unescape strings.
func decodeGeneral(dst *Trade, frame []byte, syms *Symbols) (Kind, error) {
	if !utf8.Valid(frame) {
		return KindOther, ErrInvalidUTF8
	}
	s := scanner{b: frame}
	s.ws()
	if s.i >= len(s.b) {
		return KindOther, ErrMalformed
	}
	var top object
	var dataStart, dataEnd int
	isObject := s.b[s.i] == '{'
	if isObject {
		if !s.object(&top, &dataStart, &dataEnd) {
			return KindOther, ErrMalformed
		}
	} else if !s.value() {
		return KindOther, ErrMalformed
	}
	s.ws()
	if s.i != len(s.b) {
		return KindOther, ErrMalformed
	}
	if !isObject {
		return KindOther, nil
	}
	ev := &top
	var stream []byte
	if top.envelope() {
		stream = top.stream
		if frame[dataStart] == '{' {
			var data object
			d := scanner{b: frame[:dataEnd], i: dataStart}
			var x, y int
			if !d.object(&data, &x, &y) {
				panic("BUG: parse: data object failed to rescan")
			}
			ev = &data
		} else {
			ev = nil
		}
	}
	kind := classify(ev, stream)
	if kind != KindAggTrade {
		return kind, nil
	}
	return kind, build(dst, ev, syms, 0, true, true)
}

type scanner struct {
	b     []byte
	i     int
	depth int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object scans the object at s.b[s.i] == '{', records its keys in o and the
// span of its "data" value.
func (s *scanner) object(o *object, dataStart, dataEnd *int) bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		key, esc, ok := s.str()
		if !ok {
			return false
		}
		if esc {
			key = unescape(key)
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		start := s.i
		if !s.value() {
			return false
		}
		s.record(o, key, start, dataStart, dataEnd)
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		if s.b[s.i] == '}' {
			s.i++
			s.depth--
			return true
		}
		if s.b[s.i] != ',' {
			return false
		}
		s.i++
		s.ws()
	}
}

// record stores the value at s.b[start:s.i] under key.
func (s *scanner) record(o *object, key []byte, start int, dataStart, dataEnd *int) {
	if o.assign(key, s.b[start:s.i], unquote) {
		*dataStart, *dataEnd = start, s.i
	}
}

// value skips one JSON value, validating it.
func (s *scanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		var o object
		var x, y int
		return s.object(&o, &x, &y)
	case c == '[':
		return s.array()
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '-' || isDigit(c):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

func (s *scanner) literal(l string) bool {
	if !hasPrefixAt(s.b, s.i, l) {
		return false
	}
	s.i += len(l)
	return true
}

func (s *scanner) array() bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		if !s.value() {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		if s.b[s.i] == ']' {
			s.i++
			s.depth--
			return true
		}
		if s.b[s.i] != ',' {
			return false
		}
		s.i++
		s.ws()
	}
}

// number skips a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && isDigit(b[i]):
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	s.i = i
	return true
}

// str skips the string at s.b[s.i] == '"' and returns its raw contents and
// whether they hold escapes.
func (s *scanner) str() ([]byte, bool, bool) {
	b := s.b
	start := s.i
	i := start + 1
	esc := false
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return b[start+1 : i], esc, true
		case c < 0x20:
			return nil, false, false
		case c == '\\':
			esc = true
			i++
			if i >= len(b) {
				return nil, false, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(b)-i < 5 || !isHex4(b[i+1:i+5]) {
					return nil, false, false
				}
				i += 5
			default:
				return nil, false, false
			}
		default:
			i++
		}
	}
	return nil, false, false
}

// unquote returns the contents of a validated JSON string token.
func unquote(tok []byte) []byte {
	c := tok[1 : len(tok)-1]
	for _, x := range c {
		if x == '\\' {
			return unescape(c)
		}
	}
	return c
}

func isHex4(h []byte) bool {
	for _, c := range h {
		if !isDigit(c) && !('a' <= c && c <= 'f') && !('A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		switch {
		case isDigit(c):
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unescape decodes the escapes of validated string contents the way
// encoding/json does (invalid surrogates become U+FFFD). It allocates.
func unescape(c []byte) []byte {
	out := make([]byte, 0, len(c))
	for i := 0; i < len(c); {
		if c[i] != '\\' {
			out = append(out, c[i])
			i++
			continue
		}
		switch e := c[i+1]; e {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(c[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(c) && c[i] == '\\' && c[i+1] == 'u' {
					if r2 := utf16.DecodeRune(r, hex4(c[i+2:i+6])); r2 != utf8.RuneError {
						out = utf8.AppendRune(out, r2)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, e)
		}
		i += 2
	}
	return out
}
