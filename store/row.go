package store

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// dbRow is one klines row as the writer binds it and the readers scan it: every
// column (in rowColumns' order) is an int64 slot, and slotText says which decimal
// slots hold a reference (offset<<32 | length) to text in a side buffer instead of
// an integer. The layout has no Go pointers, so a []dbRow and its text buffer go to
// C as they are (sqlite_cgo.go) and the database/sql twin (sqlite_purego.go) uses
// the same rows.
type dbRow [rowSlots]int64

// The slots of a dbRow, in rowColumns' order.
const (
	slotSeries = iota
	slotOpenTime
	slotCloseTime
	slotOpen // the first decimal column
	slotHigh
	slotLow
	slotClose
	slotVolume
	slotQuoteVolume
	slotTakerBuyVolume
	slotTakerBuyQuoteVolume
	slotCount
	slotFirstTradeID
	slotLastTradeID
	slotFirstAggID
	slotLastAggID
	slotClosed
	slotFlags
	// slotText is a bit mask, not a column: bit i set when decimal column i
	// (slotOpen+i) is text.
	slotText
	rowSlots

	rowParams   = slotText // bound values per row
	numDecimals = slotCount - slotOpen
)

// rowColumns names the klines columns in slot order.
const rowColumns = `series, open_time, close_time, open, high, low, close, volume, quote_volume,
	taker_buy_volume, taker_buy_quote_volume, count, first_trade_id, last_trade_id, first_agg_id, last_agg_id, closed, flags`

// unit is the value of 1 in an INTEGER decimal column: decimals are stored in units
// of 10^-8 when they fit in an int64 (at that scale), as exact decimal text otherwise.
const unit = 100_000_000

// maxDecimalText bounds the text of a decimal column: 2^128-1 at scale 16 is 40
// characters with its point.
const maxDecimalText = 48

// encodeRow fills r with k's columns for the series with database id series and
// appends the text of the decimals that do not fit an int64 to text, which it
// returns. The text references are offsets into text.
func encodeRow(r *dbRow, text []byte, series int64, k *shard.Kline) []byte {
	r[slotSeries] = series
	r[slotOpenTime] = k.OpenTime
	r[slotCloseTime] = k.CloseTime
	r[slotCount] = k.Count
	r[slotFirstTradeID] = k.FirstTradeID
	r[slotLastTradeID] = k.LastTradeID
	r[slotFirstAggID] = k.FirstAggID
	r[slotLastAggID] = k.LastAggID
	r[slotClosed] = 0
	if k.Closed {
		r[slotClosed] = 1
	}
	r[slotFlags] = int64(k.Flags)
	var mask int64
	prices := [4]parse.Decimal{k.Open, k.High, k.Low, k.Close}
	for i, p := range prices {
		if p <= math.MaxInt64 {
			r[slotOpen+i] = int64(p)
			continue
		}
		start := len(text)
		text = parse.AppendDecimal(text, p)
		r[slotOpen+i] = textRef(start, len(text))
		mask |= 1 << i
	}
	vols := [4]struct {
		v     shard.Uint128
		scale int
	}{{k.Volume, volumeScale}, {k.QuoteVolume, quoteScale}, {k.TakerBuyVolume, volumeScale}, {k.TakerBuyQuoteVolume, quoteScale}}
	for i, v := range vols {
		x := v.v
		if v.scale == quoteScale {
			// An integer only when the value has at most 8 decimals.
			x = shard.Uint128{Hi: 1} // does not fit
			if v.v.Hi < unit {
				if q, rem := bits.Div64(v.v.Hi, v.v.Lo, unit); rem == 0 {
					x = shard.Uint128{Lo: q}
				}
			}
		}
		if x.Hi == 0 && x.Lo <= math.MaxInt64 {
			r[slotVolume+i] = int64(x.Lo)
			continue
		}
		start := len(text)
		text = v.v.AppendDecimal(text, v.scale)
		r[slotVolume+i] = textRef(start, len(text))
		mask |= 1 << (4 + i)
	}
	r[slotText] = mask
	return text
}

func textRef(start, end int) int64 { return int64(start)<<32 | int64(end-start) }

// textOf returns the text slot i of r refers to in text, or an error when the
// reference is out of text's bounds.
func textOf(r *dbRow, i int, text []byte) ([]byte, error) {
	ref := r[i]
	start, n := ref>>32, ref&0xffff_ffff
	if start < 0 || start+n > int64(len(text)) {
		return nil, fmt.Errorf("cannot decode kline row: text reference %#x out of range", ref)
	}
	return text[start : start+n], nil
}

// decodeRow fills k from r (text: the buffer r's text references point into). The
// Symbol and Interval fields are left as they are.
func decodeRow(k *shard.Kline, r *dbRow, text []byte) error {
	k.OpenTime = r[slotOpenTime]
	k.CloseTime = r[slotCloseTime]
	k.Count = r[slotCount]
	k.FirstTradeID = r[slotFirstTradeID]
	k.LastTradeID = r[slotLastTradeID]
	k.FirstAggID = r[slotFirstAggID]
	k.LastAggID = r[slotLastAggID]
	k.Closed = r[slotClosed] != 0
	if f := r[slotFlags]; f < 0 || f > math.MaxUint8 {
		return fmt.Errorf("cannot decode kline row: flags %d: %w", f, errDecimal)
	}
	k.Flags = shard.Flags(r[slotFlags])
	k.Mark = false
	mask := r[slotText]
	prices := [4]*parse.Decimal{&k.Open, &k.High, &k.Low, &k.Close}
	for i, p := range prices {
		v := r[slotOpen+i]
		if mask&(1<<i) == 0 {
			if v < 0 {
				return fmt.Errorf("cannot decode kline row: price %d units: %w", v, errDecimal)
			}
			*p = parse.Decimal(v)
			continue
		}
		s, err := textOf(r, slotOpen+i, text)
		if err != nil {
			return err
		}
		if *p, err = parseDecimal(s); err != nil {
			return err
		}
	}
	vols := [4]struct {
		dst   *shard.Uint128
		scale int
	}{{&k.Volume, volumeScale}, {&k.QuoteVolume, quoteScale}, {&k.TakerBuyVolume, volumeScale}, {&k.TakerBuyQuoteVolume, quoteScale}}
	for i, v := range vols {
		x := r[slotVolume+i]
		if mask&(1<<(4+i)) == 0 {
			if x < 0 {
				return fmt.Errorf("cannot decode kline row: volume %d units: %w", x, errDecimal)
			}
			*v.dst = shard.Uint128{Lo: uint64(x)}
			if v.scale == quoteScale {
				*v.dst = shard.Mul64(uint64(x), unit)
			}
			continue
		}
		s, err := textOf(r, slotVolume+i, text)
		if err != nil {
			return err
		}
		if *v.dst, err = parseUint128(s, v.scale); err != nil {
			return err
		}
	}
	return nil
}

// rowBytes is the size of r's values as the Bytes counter counts them: 8 per
// integer, the length of each text.
func rowBytes(r *dbRow) uint64 {
	n := uint64(8 * rowParams)
	for i := range numDecimals {
		if r[slotText]&(1<<i) != 0 {
			n += uint64(r[slotOpen+i]&0xffff_ffff) - 8
		}
	}
	return n
}
