package shard

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/klagg/klagg/parse"
)

// Flags describe how a kline came to be.
type Flags uint8

const (
	// FlagEmpty marks a period without trades: O=H=L=C=previous close, volumes 0.
	FlagEmpty Flags = 1 << iota
	// FlagCorrected marks a closed kline emitted again after a late trade (or
	// after a late trade changed the close its empty successors copy).
	FlagCorrected
	// FlagOverflow marks a kline whose volume sums overflowed 2^128 units; the
	// overflowed sums are saturated at MaxUint128 and must not be trusted.
	FlagOverflow
	// FlagGap marks a kline overlapping a trade-id gap that could not be filled
	// (set by MarkGap).
	FlagGap
	// FlagPartial marks a kline that misses trades made before klagg followed the
	// symbol (the first kline of each interval after a start or a listing) and
	// that REST could not, or not yet, complete.
	FlagPartial
	// FlagLate marks a closed kline a trade arrived for after it had left the
	// correction history: the trade was counted and dropped, so the kline misses it.
	FlagLate
	// FlagREST marks a kline built in part or whole from Binance's REST klines
	// rather than from trades (exact, but without aggTrade ids for that part).
	FlagREST
	// FlagQuiet marks the last empty kline of a symbol silent for longer than
	// Config.MaxEmpty: no kline follows until it trades again (Binance would
	// publish empty ones).
	FlagQuiet
)

// flagNames are the names String writes, bit by bit.
var flagNames = [...]string{"empty", "corrected", "overflow", "gap", "partial", "late", "rest", "quiet"}

// String lists the set flags, e.g. "empty|corrected", or "-" for none.
func (f Flags) String() string {
	if f == 0 {
		return "-"
	}
	var b []byte
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			if len(b) > 0 {
				b = append(b, '|')
			}
			b = append(b, n...)
		}
	}
	return string(b)
}

// Kline is one candlestick of one symbol and interval, as Binance computes it.
type Kline struct {
	Symbol   uint32
	Interval uint8 // index into Config.Intervals
	Flags    Flags
	Closed   bool
	// Mark makes the event flag-only: a closed kline the aggregator no longer
	// keeps (past its correction history) gets Flags added (FlagGap, FlagLate).
	// Only Symbol, Interval, OpenTime, CloseTime and Flags are meaningful; a sink
	// ORs Flags into the kline it stored and otherwise ignores the event.
	Mark bool

	OpenTime, CloseTime int64 // Unix ms; CloseTime is the last ms of the period

	Open, High, Low, Close           parse.Decimal
	Volume, TakerBuyVolume           Uint128 // scale 8 (parse.Scale)
	QuoteVolume, TakerBuyQuoteVolume Uint128 // scale 16: exact sums of price*qty

	Count                     int64 // raw trades: sum(LastID-FirstID+1)
	FirstTradeID, LastTradeID int64 // Binance kline "f"/"L"; -1 when empty
	FirstAggID, LastAggID     int64 // -1 when empty
}

// CSVHeader names the columns AppendCSV writes, in the data.binance.vision kline layout.
const CSVHeader = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"

const quoteScale = 2 * parse.Scale

// QualityFlags are the flags that say a kline's numbers cannot be trusted as
// Binance's: AppendCSV writes them in the ignore column, which is 0 otherwise.
const QualityFlags = FlagOverflow | FlagGap | FlagPartial | FlagLate

// ParseFlags parses what String writes ("-" or names joined by '|').
func ParseFlags(s string) (Flags, error) {
	var f Flags
	if s == "-" || s == "" {
		return 0, nil
	}
	for name := range strings.SplitSeq(s, "|") {
		i := slices.Index(flagNames[:], name)
		if i < 0 {
			return 0, fmt.Errorf("cannot parse kline flag %q", name)
		}
		f |= 1 << i
	}
	return f, nil
}

// AppendCSV appends k as one CSV row in CSVHeader's column order, without a
// newline, numbers in their shortest exact decimal form. The last column, which
// Binance leaves 0, carries k's QualityFlags by name ("gap", "overflow|gap") when
// any is set, so a kline with lost trades or saturated sums is never mistaken for
// an exact one.
func (k *Kline) AppendCSV(dst []byte) []byte {
	dst = strconv.AppendInt(dst, k.OpenTime, 10)
	dst = append(dst, ',')
	dst = parse.AppendDecimal(dst, k.Open)
	dst = append(dst, ',')
	dst = parse.AppendDecimal(dst, k.High)
	dst = append(dst, ',')
	dst = parse.AppendDecimal(dst, k.Low)
	dst = append(dst, ',')
	dst = parse.AppendDecimal(dst, k.Close)
	dst = append(dst, ',')
	dst = k.Volume.AppendDecimal(dst, parse.Scale)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, k.CloseTime, 10)
	dst = append(dst, ',')
	dst = k.QuoteVolume.AppendDecimal(dst, quoteScale)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, k.Count, 10)
	dst = append(dst, ',')
	dst = k.TakerBuyVolume.AppendDecimal(dst, parse.Scale)
	dst = append(dst, ',')
	dst = k.TakerBuyQuoteVolume.AppendDecimal(dst, quoteScale)
	if q := k.Flags & QualityFlags; q != 0 {
		dst = append(dst, ',')
		return append(dst, q.String()...)
	}
	return append(dst, ",0"...)
}

// Emitter receives the klines an Aggregator produces. It is called on the
// aggregator's goroutine and must not call back into the Aggregator.
type Emitter interface {
	// Closed receives a closed kline, or a closed kline corrected by a late
	// trade (FlagCorrected). It must not drop it (block for backpressure
	// instead). k is valid only during the call.
	Closed(k *Kline)
	// Dropped receives a trade the aggregator could not apply (ErrTooLate: its
	// kline had left the correction history); the kline got FlagLate, by a
	// correction or a Mark. t is valid only during the call.
	Dropped(t *parse.Trade, why error)
	// Update receives the running state of an open kline (Closed == false).
	// Returning false means "no room now": the aggregator keeps the kline dirty
	// and offers its newer state on the next FlushUpdates (coalescing). k is
	// valid only during the call.
	Update(k *Kline) bool
}
