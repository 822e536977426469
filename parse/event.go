package parse

import "bytes"

// Field keys of an aggTrade event, in the order their errors are reported.
const (
	fieldA = iota // "a" aggTrade id
	fieldF        // "f" first trade id
	fieldL        // "l" last trade id
	fieldT        // "T" trade time
	fieldE        // "E" event time
	fieldS        // "s" symbol
	fieldP        // "p" price
	fieldQ        // "q" quantity
	fieldM        // "m" buyer is maker
	numFields
	numIntFields = fieldE + 1
)

const allFields = 1<<numFields - 1

// maxTradeSpan bounds LastID-FirstID: an aggTrade aggregates the raw trades
// of one taker order at one price, never a trillion of them, and the bound
// keeps Trade.Count (at most 1<<40) far from int64 overflow.
const maxTradeSpan = 1 << 40

// maxTimestamp is 2100-01-01T00:00:00Z in Unix milliseconds: anything later is
// a unit mix-up (microseconds) or garbage.
const maxTimestamp = 4_102_444_800_000

// object is what an engine extracts from one JSON object: the keys that name
// the Kind and the aggTrade fields. Duplicate keys overwrite (last wins).
type object struct {
	seen, typed uint16 // per field: key present / present with the right JSON type
	ints        [numIntFields]int64
	intErr      [numIntFields]error
	s, p, q     []byte // string contents, unescaped
	m           bool

	e                        []byte // string-valued "e"
	stream                   []byte // string-valued "stream"
	hasE, hasStream, hasData bool
	hasID, hasResult, hasErr bool
}

// setInt records an integer field from a raw JSON number token.
func (o *object) setInt(f int, raw []byte) {
	o.seen |= 1 << f
	o.typed |= 1 << f
	o.ints[f], o.intErr[f] = parseInt(raw)
}

func (o *object) setString(f int, v []byte) {
	o.seen |= 1 << f
	o.typed |= 1 << f
	switch f {
	case fieldS:
		o.s = v
	case fieldP:
		o.p = v
	case fieldQ:
		o.q = v
	}
}

// setWrongType records a field present with the wrong JSON type.
func (o *object) setWrongType(f int) {
	o.seen |= 1 << f
	o.typed &^= 1 << f
}

// envelope reports whether the object is a combined-stream wrapper.
func (o *object) envelope() bool { return !o.hasE && o.hasStream && o.hasData }

// intFieldOf and stringFieldOf map a key to its field, or -1.
func intFieldOf(key []byte) int {
	if len(key) != 1 {
		return -1
	}
	switch key[0] {
	case 'a':
		return fieldA
	case 'f':
		return fieldF
	case 'l':
		return fieldL
	case 'T':
		return fieldT
	case 'E':
		return fieldE
	}
	return -1
}

func stringFieldOf(key []byte) int {
	if len(key) != 1 {
		return -1
	}
	switch key[0] {
	case 's':
		return fieldS
	case 'p':
		return fieldP
	case 'q':
		return fieldQ
	}
	return -1
}

// classify names the Kind of an event object ev (nil when the event is not an
// object) reached through stream (empty for a bare event).
func classify(ev *object, stream []byte) Kind {
	if ev != nil && ev.hasE {
		return kindOfEvent(ev.e)
	}
	if bytes.Contains(stream, []byte("@bookTicker")) {
		return KindBookTicker
	}
	if ev != nil && ev.hasID && (ev.hasResult || ev.hasErr) {
		return KindResult
	}
	return KindOther
}

// build validates the aggTrade fields of o in the documented order and fills
// dst only on success. needSymbol and needEvent are false for REST input
// (no "s", no "E"; EventTime = TradeTime).
func build(dst *Trade, o *object, syms *Symbols, symbol uint32, needSymbol, needEvent bool) error {
	want := uint16(allFields)
	if !needSymbol {
		want &^= 1 << fieldS
	}
	if !needEvent {
		want &^= 1 << fieldE
	}
	if o.seen&want != want {
		return ErrMissingField
	}
	if o.typed&want != want {
		return ErrMalformed
	}
	for f := range numIntFields {
		if f == fieldE && !needEvent {
			continue
		}
		if err := o.intErr[f]; err != nil {
			return err
		}
	}
	price, err := parseDecimal(o.p)
	if err != nil {
		return err
	}
	qty, err := parseDecimal(o.q)
	if err != nil {
		return err
	}
	if price == 0 {
		return ErrZeroPrice
	}
	if qty == 0 {
		return ErrZeroQuantity
	}
	first, last, tradeTime := o.ints[fieldF], o.ints[fieldL], o.ints[fieldT]
	if first > last || last-first >= maxTradeSpan { // both >= 0: no overflow
		return ErrBadTradeRange
	}
	eventTime := tradeTime
	if needEvent {
		eventTime = o.ints[fieldE]
	}
	if tradeTime <= 0 || tradeTime >= maxTimestamp || eventTime <= 0 || eventTime >= maxTimestamp {
		return ErrBadTimestamp
	}
	if needSymbol {
		var ok bool
		if symbol, ok = syms.Lookup(o.s); !ok {
			return ErrUnknownSymbol
		}
	}
	*dst = Trade{
		AggID:      o.ints[fieldA],
		FirstID:    first,
		LastID:     last,
		TradeTime:  tradeTime,
		EventTime:  eventTime,
		Price:      price,
		Qty:        qty,
		Symbol:     symbol,
		BuyerMaker: o.m,
	}
	if invariants && (dst.Count() < 1 || dst.Count() > maxTradeSpan || dst.Price == 0 || dst.Qty == 0 || dst.TradeTime <= 0) {
		panic("BUG: parse: built an invalid trade")
	}
	return nil
}

// assign stores the raw JSON value v of key in o, for the engines that hold
// values as raw JSON text (the general scanner and the encoding/json twin); unq
// turns a JSON string token into its bytes. It reports whether key is "data",
// whose value the caller decodes itself.
func (o *object) assign(key, v []byte, unq func([]byte) []byte) (data bool) {
	c := v[0]
	isString := c == '"'
	if f := intFieldOf(key); f >= 0 {
		if c == '-' || isDigit(c) {
			o.setInt(f, v)
		} else {
			o.setWrongType(f)
		}
		return false
	}
	if f := stringFieldOf(key); f >= 0 {
		if isString {
			o.setString(f, unq(v))
		} else {
			o.setWrongType(f)
		}
		return false
	}
	switch string(key) {
	case "m":
		if c == 't' || c == 'f' {
			o.seen |= 1 << fieldM
			o.typed |= 1 << fieldM
			o.m = c == 't'
		} else {
			o.setWrongType(fieldM)
		}
	case "e":
		o.hasE = isString
		if isString {
			o.e = unq(v)
		}
	case "stream":
		o.hasStream = isString
		if isString {
			o.stream = unq(v)
		}
	case "data":
		o.hasData = true
		return true
	case "id":
		o.hasID = true
	case "result":
		o.hasResult = true
	case "error":
		o.hasErr = true
	}
	return false
}
