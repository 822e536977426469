package parse

import (
	"math"
	"unicode/utf8"

	"github.com/minio/simdjson-go"
)

// simdState is the reusable simdjson-go state of one Decoder.
type simdState struct {
	pj        *simdjson.ParsedJson
	iter, val simdjson.Iter
	data      simdjson.Iter
	elem      simdjson.Iter
	obj       simdjson.Object
	copyOpt   []simdjson.ParserOption
}

// DecodeSIMD decodes frame with simdjson-go, reusing the Decoder's parsed
// tape; it has the semantics of the package (see the overview) and the same
// results as the general engine on every frame. simdjson-go is lax where JSON
// is strict and strict where encoding/json is lax, so DecodeSIMD rejects itself
// what simdjson-go would let through (bytes it takes for whitespace, control
// bytes in strings, malformed escapes, numbers with a leading zero) and
// hands the general engine every document simdjson-go refuses (lone surrogate
// escapes, numbers beyond float64, nesting deeper than 128: valid JSON all,
// and Binance never sends them), as well as top-level scalars (simdjson-go
// parses only objects and arrays) and everything when the CPU lacks AVX2 or
// CLMUL. It does not touch the Decoder's counters. dst is written only on
// (KindAggTrade, nil).
func (d *Decoder) DecodeSIMD(dst *Trade, frame []byte) (Kind, error) {
	return d.decodeSIMD(dst, frame, d.syms.Load())
}

func (d *Decoder) decodeSIMD(dst *Trade, frame []byte, syms *Symbols) (Kind, error) {
	if !simdSupported {
		return decodeGeneral(dst, frame, syms)
	}
	if !utf8.Valid(frame) {
		return KindOther, ErrInvalidUTF8
	}
	if !simdSafe(frame) {
		return KindOther, ErrMalformed
	}
	i := 0
	for i < len(frame) && (frame[i] == ' ' || frame[i] == '\t' || frame[i] == '\n' || frame[i] == '\r') {
		i++
	}
	if i == len(frame) {
		return KindOther, ErrMalformed
	}
	if c := frame[i]; c != '{' && c != '[' {
		return decodeGeneral(dst, frame, syms)
	}
	st := &d.simd
	if st.copyOpt == nil {
		st.copyOpt = []simdjson.ParserOption{simdjson.WithCopyStrings(false)}
	}
	pj, err := simdjson.Parse(frame, st.pj, st.copyOpt...)
	if err != nil {
		// Invalid JSON, or valid JSON simdjson-go refuses: the general engine
		// tells which, exactly as encoding/json would.
		return decodeGeneral(dst, frame, syms)
	}
	st.pj = pj
	st.iter = pj.Iter()
	st.iter.Advance()
	typ, root, err := st.iter.Root(&st.val)
	if err != nil {
		return decodeGeneral(dst, frame, syms)
	}
	if typ != simdjson.TypeObject {
		return KindOther, nil
	}
	var top object
	hasData, dataIsObject := false, false
	if !st.collect(root, &top, &hasData, &dataIsObject) {
		return decodeGeneral(dst, frame, syms)
	}
	ev := &top
	var stream []byte
	if top.envelope() {
		stream = top.stream
		ev = nil
		if dataIsObject {
			var data object
			var x, y bool
			if !st.collect(&st.data, &data, &x, &y) {
				return decodeGeneral(dst, frame, syms)
			}
			ev = &data
		}
	}
	kind := classify(ev, stream)
	if kind != KindAggTrade {
		return kind, nil
	}
	return kind, build(dst, ev, syms, 0, true, true)
}

// collect walks the object at it into o; the "data" value is kept in st.data.
func (st *simdState) collect(it *simdjson.Iter, o *object, hasData, dataIsObject *bool) bool {
	obj, err := it.Object(&st.obj)
	if err != nil {
		return false
	}
	val := &st.elem
	for {
		key, t, err := obj.NextElementBytes(val)
		if err != nil {
			return false
		}
		if t == simdjson.TypeNone {
			return true
		}
		if f := intFieldOf(key); f >= 0 {
			setIntSIMD(o, f, val, t)
			continue
		}
		if f := stringFieldOf(key); f >= 0 {
			if t != simdjson.TypeString {
				o.setWrongType(f)
				continue
			}
			s, err := val.StringBytes()
			if err != nil {
				return false
			}
			o.setString(f, s)
			continue
		}
		switch string(key) {
		case "m":
			if t == simdjson.TypeBool {
				v, _ := val.Bool()
				o.seen |= 1 << fieldM
				o.typed |= 1 << fieldM
				o.m = v
			} else {
				o.setWrongType(fieldM)
			}
		case "e":
			o.hasE = t == simdjson.TypeString
			if o.hasE {
				if o.e, err = val.StringBytes(); err != nil {
					return false
				}
			}
		case "stream":
			o.hasStream = t == simdjson.TypeString
			if o.hasStream {
				if o.stream, err = val.StringBytes(); err != nil {
					return false
				}
			}
		case "data":
			o.hasData = true
			*hasData = true
			*dataIsObject = t == simdjson.TypeObject
			st.data = *val
		case "id":
			o.hasID = true
		case "result":
			o.hasResult = true
		case "error":
			o.hasErr = true
		}
	}
}

// setIntSIMD maps simdjson-go's typed numbers onto parseInt's results. The
// raw text is gone, so an integer too large for uint64 (parsed as a float
// flagged FloatOverflowedInteger) is ErrOutOfRange (ErrNegative when negative)
// and any other float is ErrBadNumber.
func setIntSIMD(o *object, f int, val *simdjson.Iter, t simdjson.Type) {
	o.seen |= 1 << f
	o.typed |= 1 << f
	o.ints[f], o.intErr[f] = 0, nil
	switch t {
	case simdjson.TypeInt:
		v, _ := val.Int()
		if v < 0 {
			o.intErr[f] = ErrNegative
		} else {
			o.ints[f] = v
		}
	case simdjson.TypeUint:
		v, _ := val.Uint()
		if v > math.MaxInt64 {
			o.intErr[f] = ErrOutOfRange
		} else {
			o.ints[f] = int64(v)
		}
	case simdjson.TypeFloat:
		v, flags, _ := val.FloatFlags()
		switch {
		case !flags.Contains(simdjson.FloatOverflowedInteger):
			o.intErr[f] = ErrBadNumber
		case v < 0:
			o.intErr[f] = ErrNegative
		default:
			o.intErr[f] = ErrOutOfRange
		}
	default:
		o.setWrongType(f)
	}
}

// simdSafe reports whether every token of b is lexically valid JSON, which
// simdjson-go does not fully check: it takes some bytes for whitespace (a form
// feed, a trailing U+00A0 or U+2003), reads malformed escapes ("\u5f5 " as
// U+5F50) and numbers with a leading zero ("-07.5"). So b fails on a byte that
// starts no token; a string with a control byte, a bad escape or no end; a
// number off JSON's grammar; a literal other than true, false, null; a number
// or literal not followed by whitespace, ',', ']', '}' or the end. simdjson-go
// checks how the tokens fit together.
func simdSafe(b []byte) bool {
	for i := 0; i < len(b); {
		switch c := b[i]; c {
		case ' ', '\t', '\n', '\r', '{', '}', '[', ']', ',', ':':
			i++
		case '"':
			if i = stringEnd(b, i+1); i < 0 {
				return false
			}
		case 't', 'f', 'n':
			lit := "null"
			if c == 't' {
				lit = "true"
			} else if c == 'f' {
				lit = "false"
			}
			if !hasPrefixAt(b, i, lit) {
				return false
			}
			if i += len(lit); !tokenEnds(b, i) {
				return false
			}
		default:
			if c != '-' && !isDigit(c) {
				return false
			}
			s := scanner{b: b, i: i}
			if !s.number() || !tokenEnds(b, s.i) {
				return false
			}
			i = s.i
		}
	}
	return true
}

// stringEnd returns the index after the quote closing the string whose
// contents start at b[i], or -1 when the string holds a control byte or an
// escape JSON does not have, or is not closed.
func stringEnd(b []byte, i int) int {
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			if i++; i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 || !isHex4(b[i+1:i+5]) {
					return -1
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// tokenEnds reports whether a number or literal may end before b[i].
func tokenEnds(b []byte, i int) bool {
	if i == len(b) {
		return true
	}
	switch b[i] {
	case ' ', '\t', '\n', '\r', ',', ']', '}':
		return true
	}
	return false
}
