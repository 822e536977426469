package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
	"github.com/klagg/klagg/store/internal/workload"
)

// discard is the baseline sink: it counts and drops.
type discard struct{ n uint64 }

func (d *discard) Kline(*shard.Kline) error { d.n++; return nil }
func (d *discard) Close() error             { return nil }

// BenchmarkReplay replays the same synthetic futures frames (fakex: 500 symbols,
// 1,000,000 aggTrades at `rate` trades per second of market time, all 15 intervals)
// through the whole pipeline into a discarding sink, into the store writer, and into
// the store writer as a bulk loader (store.Config.Bulk), and reports trades/s end to
// end, the writer's close (drain, and for bulk the index build) included. The rate sets
// the klines per trade: 1,000 trades/s of market time (2 per symbol and second)
// closes about 12 klines per 1,000 trades, 10,000 trades/s about 1 (a real
// BTCUSDT futures day: under 1).
//
// go test -run '^$' -bench 'Replay' -count 5 ./store/
func BenchmarkReplay(b *testing.B) {
	for _, rate := range []float64{1_000, 10_000} {
		gc := fakex.DefaultGenConfig()
		gc.Rate = rate
		gen := fakex.NewGenerator(gc)
		frames := gen.Frames(1_000_000)
		for _, sinkName := range []string{"discard", "store", "bulk"} {
			b.Run("rate="+itoa(int64(rate))+"/sink="+sinkName, func(b *testing.B) {
				var klines uint64
				cpu0 := workload.CPUTime()
				for b.Loop() {
					cfg := pipeline.DefaultConfig()
					cfg.Shard.Intervals = shard.BinanceIntervals(false)
					table := parse.NewSymbolTable(gen.Symbols()...)
					var sink pipeline.Sink
					var w *store.Writer
					var db *store.DB
					if sinkName != "discard" {
						scfg := store.DefaultConfig()
						scfg.Path = filepath.Join(b.TempDir(), "klagg.db")
						scfg.Bulk = sinkName == "bulk"
						var err error
						if db, err = store.Open(context.Background(), scfg); err != nil {
							b.Fatal(err)
						}
						if w, err = store.NewWriter(context.Background(), db, table, cfg.Shard.Intervals, nil); err != nil {
							b.Fatal(err)
						}
						sink = w
					} else {
						sink = &discard{}
					}
					p, err := pipeline.New(cfg, table, []pipeline.Source{&pipeline.Frames{Frames: frames}}, sink, nil)
					if err != nil {
						b.Fatal(err)
					}
					if err := p.Run(context.Background()); err != nil {
						b.Fatal(err)
					}
					if w != nil {
						klines += w.Counters().Rows
						b.StopTimer()
						db.Close()
						b.StartTimer()
					} else {
						klines += sink.(*discard).n
					}
				}
				b.ReportMetric(float64(b.N)*1e6/b.Elapsed().Seconds(), "trades/s")
				// CPU of the process, the database's close outside the timer included.
				b.ReportMetric(float64((workload.CPUTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ns/trade")
				b.ReportMetric(float64(klines)/float64(b.N)/1e3, "klines/1k-trades")
			})
		}
	}
}

func itoa(n int64) string {
	if n >= 1000 && n%1000 == 0 {
		return itoa(n/1000) + "k"
	}
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		if n /= 10; n == 0 {
			return string(b)
		}
	}
}
