package parse

// Scale is the number of fractional decimal digits a Decimal carries. Binance
// prints prices and quantities with at most 8 fractional digits on every market.
const Scale = 8

// scaleFactor is 10^Scale.
const scaleFactor = 100_000_000

// Decimal is an exact non-negative fixed-point number: the value is
// Decimal / 10^Scale. Its range is 0 to 184467440737.09551615, which covers every
// price and every single aggTrade quantity Binance publishes.
type Decimal uint64

// Trade is one aggTrade, decoded. It holds no pointers, so rings and shards move it
// by value; its size is one cache line.
type Trade struct {
	AggID      int64   // aggTrade id "a"
	FirstID    int64   // first trade id "f"
	LastID     int64   // last trade id "l"
	TradeTime  int64   // "T", Unix milliseconds
	EventTime  int64   // "E", Unix milliseconds; TradeTime for CSV and REST input
	Price      Decimal // "p"
	Qty        Decimal // "q"
	Symbol     uint32  // index in the Symbols table the decoder used
	BuyerMaker bool    // "m": true when the buyer was the maker, i.e. a taker sell
	// Control is zero for a trade. Decoders never set it; a non-zero value makes
	// the record an in-band command for the shard that owns Symbol (see shard.Op),
	// so that commands travel through the same ring as the trades they must follow.
	Control uint8
}

// Count is the number of raw trades the aggTrade stands for.
func (t *Trade) Count() int64 { return t.LastID - t.FirstID + 1 }

// AppendDecimal appends d in its shortest exact form: no trailing fractional
// zeros, no decimal point for whole numbers ("0.0163", "12", "0").
func AppendDecimal(dst []byte, d Decimal) []byte {
	whole := uint64(d) / scaleFactor
	frac := uint64(d) % scaleFactor
	dst = appendUint(dst, whole)
	if frac == 0 {
		return dst
	}
	var buf [Scale]byte
	for i := Scale - 1; i >= 0; i-- {
		buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := Scale
	for buf[n-1] == '0' {
		n--
	}
	dst = append(dst, '.')
	return append(dst, buf[:n]...)
}

// String formats d like AppendDecimal.
func (d Decimal) String() string { return string(AppendDecimal(nil, d)) }

func appendUint(dst []byte, v uint64) []byte {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, buf[i:]...)
}
