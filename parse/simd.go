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
// tape; it has the semantics of the package (see the overview) and falls
// back to the pure-Go general engine when the CPU lacks AVX2 or CLMUL, and
// for top-level scalars (simdjson-go parses only objects and arrays). It does
// not touch the Decoder's counters. dst is written only on (KindAggTrade, nil).
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
	if hasStrayControl(frame) {
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
		return KindOther, ErrMalformed
	}
	st.pj = pj
	st.iter = pj.Iter()
	st.iter.Advance()
	typ, root, err := st.iter.Root(&st.val)
	if err != nil {
		return KindOther, ErrMalformed
	}
	if typ != simdjson.TypeObject {
		return KindOther, nil
	}
	var top object
	hasData, dataIsObject := false, false
	if !st.collect(root, &top, &hasData, &dataIsObject) {
		return KindOther, ErrMalformed
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
				return KindOther, ErrMalformed
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

// hasStrayControl reports a control byte other than tab, newline and carriage
// return: never valid in JSON, but simdjson-go lets some pass as whitespace.
func hasStrayControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return true
		}
	}
	return false
}
