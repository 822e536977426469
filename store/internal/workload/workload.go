// Package workload drives a store.Writer with klagg's kline write patterns, for the
// benchmarks of package store and of the driver comparison module
// (store/internal/drivers), so that both measure the same thing.
package workload

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// Symbols and Intervals size the patterns: about 500 futures symbols, 15 intervals.
const Symbols = 500

// Intervals returns Binance's futures intervals (15).
func Intervals() []shard.Interval { return shard.BinanceIntervals(false) }

// Table returns a symbol table of n synthetic symbols.
func Table(n int) *parse.SymbolTable {
	t := parse.NewSymbolTable()
	names := make([]string, n)
	for i := range names {
		names[i] = "S" + string(rune('A'+i%26)) + string(rune('A'+i/26%26)) + string(rune('A'+i/676%26)) + "USDT"
	}
	t.Add(names...)
	return t
}

// OpenTime is the open time Kline gives period p of interval ivs[interval].
func OpenTime(interval uint8, p int64) int64 {
	var k shard.Kline
	Kline(&k, Intervals(), 0, interval, p, true)
	return k.OpenTime
}

// Fill writes minutes of closed klines for Symbols symbols and every interval, as
// BenchBulk writes them, into a new database and returns its path.
func Fill(b *testing.B, driver string, minutes int64) string {
	return FillLayout(b, driver, minutes, "bulk")
}

// FillLayout is Fill with the database laid out as a writer leaves it: "bulk" (a
// normal writer fed as fast as it writes: large commits), "replay" (a bulk loader,
// store.Config.Bulk), "live" (one commit per market minute, as the daemon's commits
// every second leave a series' klines: one per commit, each on its own page;
// compaction off) or "compacted" (live, with compaction keeping pace, as the
// daemon's windows are once over).
func FillLayout(b *testing.B, driver string, minutes int64, layout string) string {
	table := Table(Symbols)
	ivs := Intervals()
	db, w := openConfig(b, driver, table, func(c *store.Config) {
		c.Bulk = layout == "replay"
		switch layout {
		case "live":
			c.Compact = 0
		case "compacted":
			c.RetentionEvery = time.Millisecond
		}
	})
	var k shard.Kline
	for minute := int64(0); minute < minutes; minute++ {
		for i, iv := range ivs {
			per := int64(43_200)
			if iv.Millis > 0 {
				per = iv.Millis / 60_000
			}
			if minute%per != 0 {
				continue
			}
			for s := range uint32(Symbols) {
				Kline(&k, ivs, s, uint8(i), minute/per, true)
				if err := w.Kline(&k); err != nil {
					b.Fatal(err)
				}
			}
		}
		if layout == "live" || layout == "compacted" {
			if err := w.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	return db.Path()
}

// Kline fills k with realistic values for symbol, interval and period p: prices near
// 60000 with 8 decimals, volumes with 5-8 decimals, quote volumes with 16.
func Kline(k *shard.Kline, ivs []shard.Interval, symbol uint32, interval uint8, p int64, closed bool) {
	iv := ivs[interval]
	open := iv.OpenTime(1_600_000_000_000 + p*60_000)
	if iv.Millis > 0 { // period p counted from the one holding market minute 0
		open = iv.Origin + p*iv.Millis + (1_600_000_000_000-iv.Origin)/iv.Millis*iv.Millis
	}
	x := uint64(p)*7919 + uint64(symbol)*104729 + uint64(interval)*31
	px := parse.Decimal(6_000_000_000_000 + x%100_000_000_000)
	*k = shard.Kline{
		Symbol: symbol, Interval: interval, Closed: closed,
		OpenTime: open, CloseTime: iv.CloseTime(open),
		Open: px, High: px + 12_345_678, Low: px - 9_876_543, Close: px + 1_234_567,
		Volume:              shard.Uint128{Lo: 2_163_272_000 + x%1_000_000},
		TakerBuyVolume:      shard.Uint128{Lo: 1_228_492_000 + x%1000},
		QuoteVolume:         shard.Mul64(1_313_200_013_404_100+x, 100_000_007),
		TakerBuyQuoteVolume: shard.Mul64(745_719_410_228_400+x, 100_000_007),
		Count:               617 + int64(x%1000),
		FirstTradeID:        int64(x), LastTradeID: int64(x) + 616,
		FirstAggID: int64(x) / 3, LastAggID: int64(x)/3 + 200,
	}
}

// CPUTime is the process's user and system CPU time: the metric that stays honest
// on a shared machine, where wall time depends on the neighbours.
func CPUTime() time.Duration { return cpuTime() }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// open starts a writer on a new database in a temporary directory.
func open(b *testing.B, driver string, table *parse.SymbolTable) (*store.DB, *store.Writer) {
	return openConfig(b, driver, table, func(*store.Config) {})
}

func openConfig(b *testing.B, driver string, table *parse.SymbolTable, set func(*store.Config)) (*store.DB, *store.Writer) {
	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(b.TempDir(), "klagg.db")
	cfg.Driver = driver
	set(&cfg)
	cfg.CommitEvery = time.Hour // Sync commits
	ctx := context.Background()
	db, err := store.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	w, err := store.NewWriter(ctx, db, table, Intervals(), nil)
	if err != nil {
		b.Fatal(err)
	}
	return db, w
}

// BenchBulk writes closed klines through the writer as a replay does: for each
// minute, every symbol's 1m kline, and the klines of longer intervals as their
// periods end, time-major across series. One iteration is 100,000 klines and a Sync.
// With bulk, the writer is a bulk loader (store.Config.Bulk) and the writer's Close,
// which builds the key index, is timed too. It reports rows/s committed, the
// nanoseconds per row the caller spent in Kline (the sink goroutine's cost: near 0
// unless the writer falls behind), the process's CPU per row and, for bulk, the
// milliseconds Close took.
func BenchBulk(b *testing.B, driver string, bulk bool) {
	table := Table(Symbols)
	ivs := Intervals()
	db, w := openConfig(b, driver, table, func(c *store.Config) { c.Bulk = bulk })
	defer db.Close()
	closed := false
	defer func() {
		if !closed {
			w.Close()
		}
	}()
	var k shard.Kline
	var rows int64
	var inKline time.Duration
	minute := int64(0)
	cpu0 := cpuTime()
	for b.Loop() {
		n := 0
		start := time.Now()
		for n < 100_000 {
			for i := range ivs {
				iv := ivs[i]
				per := int64(1)
				if iv.Millis > 0 {
					per = iv.Millis / 60_000
				} else {
					per = 43_200
				}
				if per == 0 || minute%per != 0 {
					continue
				}
				for s := range uint32(Symbols) {
					Kline(&k, ivs, s, uint8(i), minute/per, true)
					if err := w.Kline(&k); err != nil {
						b.Fatal(err)
					}
					n++
				}
			}
			minute++
		}
		inKline += time.Since(start)
		if err := w.Sync(); err != nil {
			b.Fatal(err)
		}
		rows += int64(n)
	}
	elapsed := b.Elapsed()
	if bulk {
		start := time.Now()
		closed = true
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		finish := time.Since(start)
		elapsed += finish
		b.ReportMetric(float64(finish.Milliseconds()), "close-ms")
	}
	b.ReportMetric(float64(rows)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(inKline.Nanoseconds())/float64(rows), "sink-ns/row")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(rows), "cpu-ns/row")
}

// BenchLive is the daemon's steady state: one iteration is one second of market
// time for 500 symbols x 15 intervals: every series' open kline updated twice
// (coalesced to one row), the klines whose period ends closed, then a commit. It
// reports rows/s committed (open and closed) and the commit time per second of
// market time.
func BenchLive(b *testing.B, driver string) {
	table := Table(Symbols)
	ivs := Intervals()
	db, w := open(b, driver, table)
	defer db.Close()
	defer w.Close()
	var k shard.Kline
	sec := int64(0)
	before := w.Counters()
	cpu0 := cpuTime()
	for b.Loop() {
		for i := range ivs {
			iv := ivs[i]
			per := int64(43_200 * 60)
			if iv.Millis > 0 {
				per = iv.Millis / 1000
			}
			p := sec / per
			for s := range uint32(Symbols) {
				if sec%per == 0 && sec > 0 {
					Kline(&k, ivs, s, uint8(i), p-1, true)
					if err := w.Kline(&k); err != nil {
						b.Fatal(err)
					}
				}
				for range 2 {
					Kline(&k, ivs, s, uint8(i), p, false)
					k.LastAggID += sec
					if err := w.Kline(&k); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		if err := w.Sync(); err != nil {
			b.Fatal(err)
		}
		sec++
	}
	c := w.Counters()
	rows := (c.Rows + c.OpenRows) - (before.Rows + before.OpenRows)
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(sec), "ms/market-s")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(rows), "cpu-ns/row")
}
