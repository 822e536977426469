package shard

import (
	"flag"
	"fmt"
	"testing"

	"github.com/klagg/klagg/parse"
)

// go test -run '^$' -bench . -benchtime 2s ./shard/

// BenchmarkApply applies one trade into every interval of the set, for 64
// symbols round-robin, 5 ms of event time apart, with Advance every 64 trades
// (as a pipeline batch would).
func BenchmarkApply(b *testing.B) {
	for _, ivs := range [][]Interval{BinanceIntervals(true), BinanceIntervals(true)[1:2]} {
		b.Run(fmt.Sprintf("intervals=%d", len(ivs)), func(b *testing.B) {
			a, err := New(Config{Intervals: ivs, Grace: 2000, History: 2}, nopEmitter{})
			if err != nil {
				b.Fatal(err)
			}
			symbols := *benchSymbols
			tr := parse.Trade{AggID: 1, FirstID: 1, LastID: 2, TradeTime: ms("2024-02-29 12:00:00.000"), Price: 6_543_210_000_000, Qty: 1_234_567}
			for s := range uint32(symbols) {
				tr.Symbol = s
				a.Apply(&tr)
			}
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				n++
				tr.Symbol = uint32(n % symbols)
				tr.AggID = int64(n/symbols) + 2
				tr.TradeTime += 5
				tr.Price += parse.Decimal(n&0xff) - 0x7f
				tr.BuyerMaker = n&1 == 0
				a.Apply(&tr)
				if n%64 == 0 {
					a.Advance(tr.TradeTime)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "trades/s")
		})
	}
}

func BenchmarkAdvance(b *testing.B) {
	a, tr := steadyAggregator(b, BinanceIntervals(true))
	b.ReportAllocs()
	for b.Loop() {
		a.Advance(tr.TradeTime) // nothing to close: O(intervals)
	}
}

func BenchmarkFlushUpdates(b *testing.B) {
	a, tr := steadyAggregator(b, BinanceIntervals(true))
	b.ReportAllocs()
	for b.Loop() {
		tr.AggID++
		a.Apply(tr)
		a.FlushUpdates(true)
	}
}

func BenchmarkAppendCSV(b *testing.B) {
	k := Kline{OpenTime: 1570752000000, CloseTime: 1570752059999, Open: 141342, High: 141557, Low: 141266, Close: 141418,
		Volume: Uint128{Lo: 148200000000}, QuoteVolume: Mul64(141342, 148200000000), Count: 1234}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = k.AppendCSV(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkUint128Decimal compares AppendDecimal with its naive math/big twin.
func BenchmarkUint128Decimal(b *testing.B) {
	x := Mul64(6_543_210_000_000, 98_765_432_100)
	b.Run("impl=uint128", func(b *testing.B) {
		buf := make([]byte, 0, 64)
		b.ReportAllocs()
		for b.Loop() {
			buf = x.AppendDecimal(buf[:0], 16)
		}
	})
	b.Run("impl=big", func(b *testing.B) {
		v := u128Big(x)
		b.ReportAllocs()
		for b.Loop() {
			_ = bigDecimal(v, 16)
		}
	})
}

var benchSymbols = flag.Int("bench.symbols", 64, "symbols round-robin in BenchmarkApply")
