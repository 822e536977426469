package drivers

import (
	"context"
	"testing"

	_ "modernc.org/sqlite" // registers "sqlite"

	"github.com/klagg/klagg/store"
	"github.com/klagg/klagg/store/internal/workload"
)

var drivers = []string{"sqlite3", "sqlite"}

// BenchmarkWrite runs klagg's write patterns (see workload) through store.Writer on
// each driver.
func BenchmarkWrite(b *testing.B) {
	for _, d := range drivers {
		b.Run("driver="+d+"/pattern=bulk", func(b *testing.B) { workload.BenchBulk(b, d, false) })
		b.Run("driver="+d+"/pattern=live", func(b *testing.B) { workload.BenchLive(b, d) })
	}
}

// BenchmarkKlines reads 1500 klines of one series on each driver.
func BenchmarkKlines(b *testing.B) {
	for _, d := range drivers {
		b.Run("driver="+d+"/limit=1500", func(b *testing.B) {
			cfg := store.DefaultConfig()
			cfg.Path, cfg.Driver = workload.Fill(b, d, 2000), d
			db, err := store.OpenReadOnly(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sym := workload.Table(workload.Symbols).Load().Name(uint32(i * 37 % workload.Symbols))
				i++
				ks, err := db.Klines(context.Background(), "futures", sym, "1m", -1, -1, 1500)
				if err != nil || len(ks) != 1500 {
					b.Fatalf("%d klines, %v", len(ks), err)
				}
			}
			b.ReportMetric(1500*float64(b.N)/b.Elapsed().Seconds(), "klines/s")
		})
	}
}
