package api

import (
	"math/bits"
	"strconv"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// quoteScale is the scale of Kline.QuoteVolume and TakerBuyQuoteVolume.
const quoteScale = 2 * parse.Scale

// appendIgnore appends Binance's last, ignored field as a JSON string: "0",
// or the names of k's quality flags ("gap", "partial|late") when a kline's
// numbers cannot be trusted as Binance's, as the CSV files write them.
func appendIgnore(dst []byte, k *shard.Kline) []byte {
	dst = append(dst, '"')
	if q := k.Flags & shard.QualityFlags; q != 0 {
		dst = append(dst, q.String()...)
	} else {
		dst = append(dst, '0')
	}
	return append(dst, '"')
}

func appendDecimal(dst []byte, d parse.Decimal) []byte {
	dst = append(dst, '"')
	dst = parse.AppendDecimal(dst, d)
	return append(dst, '"')
}

func appendUint128(dst []byte, v shard.Uint128, scale int) []byte {
	dst = append(dst, '"')
	if scale <= 19 && v.Hi < pow10u64[scale] {
		// The whole part fits 64 bits: one 128/64 division splits it from the
		// fraction (every realistic volume; saturated sums take the slow path).
		whole, frac := bits.Div64(v.Hi, v.Lo, pow10u64[scale])
		dst = appendWholeFrac(dst, whole, frac, scale)
	} else {
		dst = v.AppendDecimal(dst, scale)
	}
	return append(dst, '"')
}

var pow10u64 = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// appendScaled appends v / 10^scale in its shortest exact form, as
// Uint128.AppendDecimal does, for the common case of a sum below 2^64: two
// divisions instead of one per digit.
func appendScaled(dst []byte, v uint64, scale int) []byte {
	return appendWholeFrac(dst, v/pow10u64[scale], v%pow10u64[scale], scale)
}

// appendWholeFrac appends whole, then frac (< 10^scale) as scale decimals
// without trailing zeros.
func appendWholeFrac(dst []byte, whole, frac uint64, scale int) []byte {
	dst = strconv.AppendUint(dst, whole, 10)
	if frac == 0 {
		return dst
	}
	var buf [19]byte
	for i := scale - 1; i >= 0; i-- {
		buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := scale
	for buf[n-1] == '0' {
		n--
	}
	dst = append(dst, '.')
	return append(dst, buf[:n]...)
}

// AppendRESTKline appends k as one row of Binance's REST klines answer:
// [openTime,"open","high","low","close","volume",closeTime,"quoteVolume",
// trades,"takerBuyVolume","takerBuyQuoteVolume","0"]. Times and the trade count
// are numbers, everything else strings; numbers are exact decimals in their
// shortest form ("0.0163", "12"), which clients parse to the same values as
// Binance's zero-padded ones.
func AppendRESTKline(dst []byte, k *shard.Kline) []byte {
	dst = append(dst, '[')
	dst = strconv.AppendInt(dst, k.OpenTime, 10)
	dst = append(dst, ',')
	dst = appendDecimal(dst, k.Open)
	dst = append(dst, ',')
	dst = appendDecimal(dst, k.High)
	dst = append(dst, ',')
	dst = appendDecimal(dst, k.Low)
	dst = append(dst, ',')
	dst = appendDecimal(dst, k.Close)
	dst = append(dst, ',')
	dst = appendUint128(dst, k.Volume, parse.Scale)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, k.CloseTime, 10)
	dst = append(dst, ',')
	dst = appendUint128(dst, k.QuoteVolume, quoteScale)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, k.Count, 10)
	dst = append(dst, ',')
	dst = appendUint128(dst, k.TakerBuyVolume, parse.Scale)
	dst = append(dst, ',')
	dst = appendUint128(dst, k.TakerBuyQuoteVolume, quoteScale)
	dst = append(dst, ',')
	dst = appendIgnore(dst, k)
	return append(dst, ']')
}

// AppendKlineEvent appends k as Binance's kline stream event:
// {"e":"kline","E":eventTime,"s":SYMBOL,"k":{"t","T","s","i","f","L","o","c","h",
// "l","v","n","x","q","V","Q","B"}} with Binance's types (ids, times and the
// trade count numbers, x a boolean, the rest strings). x is k.Closed.
func AppendKlineEvent(dst []byte, k *shard.Kline, symbol, interval string, eventTime int64) []byte {
	dst = append(dst, `{"e":"kline","E":`...)
	dst = strconv.AppendInt(dst, eventTime, 10)
	dst = append(dst, `,"s":"`...)
	dst = append(dst, symbol...)
	dst = append(dst, `","k":{"t":`...)
	dst = strconv.AppendInt(dst, k.OpenTime, 10)
	dst = append(dst, `,"T":`...)
	dst = strconv.AppendInt(dst, k.CloseTime, 10)
	dst = append(dst, `,"s":"`...)
	dst = append(dst, symbol...)
	dst = append(dst, `","i":"`...)
	dst = append(dst, interval...)
	dst = append(dst, `","f":`...)
	dst = strconv.AppendInt(dst, k.FirstTradeID, 10)
	dst = append(dst, `,"L":`...)
	dst = strconv.AppendInt(dst, k.LastTradeID, 10)
	dst = append(dst, `,"o":`...)
	dst = appendDecimal(dst, k.Open)
	dst = append(dst, `,"c":`...)
	dst = appendDecimal(dst, k.Close)
	dst = append(dst, `,"h":`...)
	dst = appendDecimal(dst, k.High)
	dst = append(dst, `,"l":`...)
	dst = appendDecimal(dst, k.Low)
	dst = append(dst, `,"v":`...)
	dst = appendUint128(dst, k.Volume, parse.Scale)
	dst = append(dst, `,"n":`...)
	dst = strconv.AppendInt(dst, k.Count, 10)
	if k.Closed {
		dst = append(dst, `,"x":true,"q":`...)
	} else {
		dst = append(dst, `,"x":false,"q":`...)
	}
	dst = appendUint128(dst, k.QuoteVolume, quoteScale)
	dst = append(dst, `,"V":`...)
	dst = appendUint128(dst, k.TakerBuyVolume, parse.Scale)
	dst = append(dst, `,"Q":`...)
	dst = appendUint128(dst, k.TakerBuyQuoteVolume, quoteScale)
	dst = append(dst, `,"B":`...)
	dst = appendIgnore(dst, k)
	return append(dst, `}}`...)
}
