package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klagg/klagg/shard"

	"github.com/klagg/klagg/store"
	"github.com/klagg/klagg/store/internal/workload"
)

// go test -run '^$' -bench 'Write' -count 5 ./store/
// The pure-Go driver beside it: cd store/internal/drivers && go test -run '^$' -bench . -count 5
func BenchmarkWrite(b *testing.B) {
	b.Run("driver="+store.DefaultDriver+"/pattern=bulk", func(b *testing.B) { workload.BenchBulk(b, store.DefaultDriver, false) })
	b.Run("driver="+store.DefaultDriver+"/pattern=replay", func(b *testing.B) { workload.BenchBulk(b, store.DefaultDriver, true) })
	b.Run("driver="+store.DefaultDriver+"/pattern=live", func(b *testing.B) { workload.BenchLive(b, store.DefaultDriver) })
}

// BenchmarkKlines reads 1500 1m klines of one of 500 symbols (a Binance REST klines
// request at futures' maximum limit) from a database of 500 symbols x 15 intervals,
// 3000 minutes (2.5 million klines), the newest 1500 or 1500 from a start time, with
// and without the memory map (Config.MmapBytes), from databases laid out as a
// replay's bulk load leaves them, as the daemon's commits every second do (a
// series' klines one per commit: the worst case for a range read, and what the
// current compaction window holds) and as compaction leaves them
// (workload.FillLayout). parallel=2 reads from two goroutines (the API's requests
// run concurrently).
//
// go test -run '^$' -bench 'Klines' -count 5 ./store/
func BenchmarkKlines(b *testing.B) {
	for _, layout := range []string{"replay", "live", "compacted"} {
		path := workload.FillLayout(b, store.DefaultDriver, 3000, layout)
		for _, mmap := range []int64{0, 1 << 30} {
			cfg := store.DefaultConfig()
			cfg.Path, cfg.MmapBytes = path, mmap
			db, err := store.OpenReadOnly(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			for _, mode := range []string{"newest", "range"} {
				b.Run(fmt.Sprintf("layout=%s/mmap=%dMiB/limit=1500/query=%s", layout, mmap>>20, mode), func(b *testing.B) {
					benchKlines(b, db, mode)
				})
			}
			if mmap == 0 {
				b.Run(fmt.Sprintf("layout=%s/mmap=0MiB/limit=1500/query=newest/parallel=2", layout), func(b *testing.B) {
					benchKlinesParallel(b, db)
				})
			}
		}
	}
}

func benchKlinesParallel(b *testing.B, db *store.DB) {
	b.ReportAllocs()
	names := workload.Table(workload.Symbols).Load()
	b.SetParallelism(1) // GOMAXPROCS goroutines: 2 here
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			ks, err := db.Klines(context.Background(), "futures", names.Name(uint32(i*37%workload.Symbols)), "1m", -1, -1, 1500)
			if err != nil || len(ks) != 1500 {
				b.Errorf("%d klines, %v", len(ks), err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}

func benchKlines(b *testing.B, db *store.DB, mode string) {
	b.ReportAllocs()
	names := workload.Table(workload.Symbols).Load()
	start := int64(-1)
	if mode == "range" {
		start = workload.OpenTime(0, 1000)
	}
	rows, i := 0, 0
	for b.Loop() {
		sym := names.Name(uint32(i * 37 % workload.Symbols))
		i++
		ks, err := db.Klines(context.Background(), "futures", sym, "1m", start, -1, 1500)
		if err != nil || len(ks) != 1500 {
			b.Fatalf("%d klines, %v", len(ks), err)
		}
		rows += len(ks)
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "klines/s")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}

// BenchmarkWriterKline is the sink goroutine's cost of one event: for a closed kline
// a copy into the queue, for an update a copy into its series' slot; no SQLite. The
// commits, every 4,096 events (the default BatchRows, so the queue stays the size
// it has in a replay), are taken out of the timing: the writer could not keep up
// with a loop that does nothing else, and the loop would measure its backpressure.
//
// go test -run '^$' -bench 'WriterKline' -count 5 ./store/
func BenchmarkWriterKline(b *testing.B) {
	for _, closed := range []bool{true, false} {
		name := "event=closed"
		if !closed {
			name = "event=update"
		}
		b.Run(name, func(b *testing.B) {
			cfg := store.DefaultConfig()
			cfg.Path = b.TempDir() + "/klagg.db"
			cfg.CommitEvery = time.Hour
			cfg.BatchRows = 1 << 30
			db, err := store.Open(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ivs := workload.Intervals()
			w, err := store.NewWriter(context.Background(), db, workload.Table(workload.Symbols), ivs, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			ks := make([]shard.Kline, 7500)
			for i := range ks {
				workload.Kline(&ks[i], ivs, uint32(i%workload.Symbols), uint8(i/workload.Symbols), 0, closed)
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if err := w.Kline(&ks[n%len(ks)]); err != nil {
					b.Fatal(err)
				}
				if n++; n%4096 == 0 {
					b.StopTimer()
					if err := w.Sync(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			}
		})
	}
}
