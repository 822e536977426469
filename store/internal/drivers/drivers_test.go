package drivers

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
	"github.com/klagg/klagg/store/internal/workload"
)

// TestStoreDrivers writes the same klines through both drivers and reads back the
// same values: the benchmarks compare equal work.
func TestStoreDrivers(t *testing.T) {
	ivs := workload.Intervals()
	var want []shard.Kline
	for p := range int64(50) {
		for s := range uint32(3) {
			var k shard.Kline
			workload.Kline(&k, ivs, s, 0, p, p < 49)
			want = append(want, k)
		}
	}
	for _, d := range drivers {
		cfg := store.DefaultConfig()
		cfg.Path = filepath.Join(t.TempDir(), "klagg.db")
		cfg.Driver = d
		ctx := context.Background()
		db, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		table := workload.Table(3)
		w, err := store.NewWriter(ctx, db, table, ivs, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if err := w.Kline(&want[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		for s := range uint32(3) {
			got, err := db.Klines(ctx, "futures", table.Load().Name(s), ivs[0].Name, -1, -1, 100)
			if err != nil || len(got) != 50 {
				t.Fatalf("%s: %d klines, %v", d, len(got), err)
			}
			for i, k := range got {
				exp := want[i*3+int(s)]
				k.Symbol, k.Interval = exp.Symbol, exp.Interval
				if k != exp {
					t.Errorf("%s: kline %d:\n got %+v\nwant %+v", d, i, k, exp)
				}
			}
		}
		db.Close()
	}
}
