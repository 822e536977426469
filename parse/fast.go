package parse

import "math/bits"

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
	if hasPrefixAt(b, i, `aggTrade"`) {
		if aggTradeFast(dst, b, i+9, envelope, syms) {
			return KindAggTrade, nil
		}
		return decodeAggTradeExact(dst, b, i+9, envelope, syms)
	}
	j := scanPlainString(b, i)
	if j < 0 {
		return KindOther, ErrNotCanonical
	}
	if kind := kindOfEvent(b[i:j]); kind != KindAggTrade {
		return kind, nil
	}
	return decodeAggTradeExact(dst, b, j+1, envelope, syms)
}

// aggTradeFast is the straight-line path for the frames Binance sends: the
// aggTrade event from b[i:], which follows `{"e":"aggTrade"`, in a canonical
// layout, with every integer of at most 15 digits, every price and quantity
// in the common shape (decimalAt), a symbol of at most 15 bytes that syms
// holds, and every check of build passed. It fills dst and reports true only
// then; for anything else it writes nothing and reports false, and
// decodeAggTradeExact gives the exact answer (the layout or the error), so
// both paths agree on every frame by construction.
func aggTradeFast(dst *Trade, b []byte, i int, envelope bool, syms *Symbols) bool {
	var t Trade
	var v uint64
	var ok bool
	if !hasPrefixAt(b, i, `,"E":`) {
		return false
	}
	if v, i, ok = uintAt(b, i+5); !ok {
		return false
	}
	t.EventTime = int64(v)
	switch {
	case hasPrefixAt(b, i, `,"a":`): // futures
		if v, i, ok = uintAt(b, i+5); !ok || !hasPrefixAt(b, i, `,"s":"`) {
			return false
		}
		t.AggID = int64(v)
		if t.Symbol, i, ok = symbolAt(b, i+6, syms); !ok {
			return false
		}
	case hasPrefixAt(b, i, `,"s":"`): // spot
		if t.Symbol, i, ok = symbolAt(b, i+6, syms); !ok || !hasPrefixAt(b, i, `,"a":`) {
			return false
		}
		if v, i, ok = uintAt(b, i+5); !ok {
			return false
		}
		t.AggID = int64(v)
	default:
		return false
	}
	if !hasPrefixAt(b, i, `,"p":"`) {
		return false
	}
	if t.Price, i, ok = decimalAt(b, i+6); !ok || !hasPrefixAt(b, i, `,"q":"`) {
		return false
	}
	if t.Qty, i, ok = decimalAt(b, i+6); !ok || !hasPrefixAt(b, i, `,"f":`) {
		return false
	}
	if v, i, ok = uintAt(b, i+5); !ok || !hasPrefixAt(b, i, `,"l":`) {
		return false
	}
	t.FirstID = int64(v)
	if v, i, ok = uintAt(b, i+5); !ok || !hasPrefixAt(b, i, `,"T":`) {
		return false
	}
	t.LastID = int64(v)
	if v, i, ok = uintAt(b, i+5); !ok || !hasPrefixAt(b, i, `,"m":`) {
		return false
	}
	t.TradeTime = int64(v)
	if t.BuyerMaker, i, ok = boolFast(b, i+5); !ok {
		return false
	}
	if hasPrefixAt(b, i, `,"M":`) {
		if _, i, ok = boolFast(b, i+5); !ok {
			return false
		}
	}
	end := i + 1
	if envelope {
		end++
	}
	if end != len(b) || b[i] != '}' || envelope && b[i+1] != '}' {
		return false
	}
	// build's checks; the integers are below 10^15, so none is out of range.
	if t.Price == 0 || t.Qty == 0 || t.FirstID > t.LastID || t.LastID-t.FirstID >= maxTradeSpan ||
		t.TradeTime <= 0 || t.TradeTime >= maxTimestamp || t.EventTime <= 0 || t.EventTime >= maxTimestamp {
		return false
	}
	*dst = t
	return true
}

// symbolAt reads a plain symbol name of at most 15 bytes (the closing quote
// must be in the 16 bytes it reads) whose contents start at b[i], with 16
// bytes left to read, and looks it up in syms. It returns the
// symbol's index and the index after the closing quote.
func symbolAt(b []byte, i int, syms *Symbols) (symbol uint32, next int, ok bool) {
	if i < 0 || len(b)-i < 16 {
		return 0, i, false
	}
	x := load8(b, i)
	var w0, w1 uint64
	var n int
	if m := specialBytes(x); m != 0 {
		n = bits.TrailingZeros64(m) >> 3
		w0 = x & (1<<(8*uint(n)) - 1)
	} else {
		y := load8(b, i+8)
		if m = specialBytes(y); m == 0 {
			return 0, i, false
		}
		k := bits.TrailingZeros64(m) >> 3
		n = 8 + k
		w0, w1 = x, y&(1<<(8*uint(k))-1)
	}
	if b[i+n] != '"' {
		return 0, i, false
	}
	symbol, ok = syms.lookupShort(w0, w1, n)
	return symbol, i + n + 1, ok
}

// decodeAggTradeExact scans the aggTrade event from b[i:], which follows
// `{"e":"aggTrade"`, field by field and validates it with build: the exact
// answer, with the error build picks, for every canonical frame aggTradeFast
// leaves to it.
func decodeAggTradeExact(dst *Trade, b []byte, i int, envelope bool, syms *Symbols) (Kind, error) {
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
