package store_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// copyDB copies a WAL database as a crash would leave it (the file and its WAL,
// between two commits) to a new directory and returns the copy's path.
func copyDB(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "crash.db")
	for _, suffix := range []string{"", "-wal"} {
		src, err := os.Open(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(dst + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestStoreBulk loads klines in bulk mode, with a correction, marks and an open
// kline; checks that reads say the load is running, that Close leaves what the
// normal writer would have, and that a crash image of the load is finished by the
// next Open, holding the committed closed klines and a Through that covers only
// them.
func TestStoreBulk(t *testing.T) {
	ivs := testIntervals(t, "1m,5m")
	cfg := testConfig(t)
	cfg.Bulk = true
	h := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT", "ETHUSDT"), ivs, nil)
	var want []shard.Kline // BTCUSDT 1m, closed
	for i := range int64(30) {
		k := kl(ivs, 0, 0, t0+i*60_000, 10*i, 10*i+9, true)
		h.put(k)
		want = append(want, k)
		if i%5 == 4 {
			h.put(kl(ivs, 0, 1, t0+(i-4)*60_000, 10*(i-4), 10*i+9, true))
		}
		if i == 5 { // minute 3 corrected after minute 5 closed: the same key twice
			want[3] = kl(ivs, 0, 0, t0+3*60_000, 30, 40, true)
			want[3].Flags |= shard.FlagCorrected
			h.put(want[3])
		}
	}
	h.put(kl(ivs, 1, 0, t0, 1, 2, true))
	h.put(shard.Kline{Symbol: 0, Interval: 0, OpenTime: t0 + 7*60_000, CloseTime: t0 + 8*60_000 - 1, Closed: true, Mark: true, Flags: shard.FlagLate})
	h.put(shard.Kline{Symbol: 0, Interval: 0, OpenTime: t0 - 60_000, CloseTime: t0 - 1, Closed: true, Mark: true, Flags: shard.FlagGap}) // not stored
	want[7].Flags |= shard.FlagLate
	open := kl(ivs, 0, 0, t0+30*60_000, 300, 304, false)
	h.put(open)
	h.sync()

	if _, err := h.db.Klines(ctx, "futures", "BTCUSDT", "1m", -1, -1, 10); !errors.Is(err, store.ErrBulkLoad) {
		t.Errorf("a read during the bulk load: %v, want ErrBulkLoad", err)
	}
	if _, err := h.db.LoadSeries(ctx, "futures", 0); !errors.Is(err, store.ErrBulkLoad) {
		t.Errorf("LoadSeries during the bulk load: %v, want ErrBulkLoad", err)
	}
	crash := copyDB(t, cfg.Path)

	if err := h.w.Close(); err != nil {
		t.Fatal(err)
	}
	c := h.w.Counters()
	h.w = nil
	if c.Rows != 30+6+1+1 || c.OpenRows != 1 || c.Marks != 1 || c.MarksMissing != 1 {
		t.Errorf("counters %+v", c)
	}
	check := func(db *store.DB, withOpen bool) {
		t.Helper()
		got, err := db.Klines(ctx, "futures", "BTCUSDT", "1m", -1, -1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		w := want
		if withOpen {
			w = append(w[:len(w):len(w)], open)
		}
		if len(got) != len(w) {
			t.Fatalf("%d klines, want %d", len(got), len(w))
		}
		for i := range w {
			if !same(got[i], w[i]) {
				t.Errorf("kline %d:\n got %+v\nwant %+v", i, got[i], w[i])
			}
		}
		if got, err := db.Klines(ctx, "futures", "BTCUSDT", "5m", -1, -1, 1000); err != nil || len(got) != 6 {
			t.Errorf("5m: %d klines, %v", len(got), err)
		}
		series, err := db.LoadSeries(ctx, "futures", 0)
		if err != nil {
			t.Fatal(err)
		}
		through := map[string]int64{}
		for _, s := range series {
			through[s.Symbol+" "+s.Interval] = s.Through
		}
		wantThrough := int64(299)
		if withOpen {
			wantThrough = 304
		}
		if through["BTCUSDT 1m"] != wantThrough || through["BTCUSDT 5m"] != 299 || through["ETHUSDT 1m"] != 2 {
			t.Errorf("Through %v, want BTCUSDT 1m %d", through, wantThrough)
		}
	}
	check(h.db, true)

	ccfg := testConfig(t)
	ccfg.Path = crash
	db, err := store.Open(ctx, ccfg) // finishes the interrupted load
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check(db, false)
}

// TestStoreBulkOverStored replays, in bulk mode, klines over those a normal writer
// stored (its open kline included): the replayed rows replace the stored ones, as
// upserts would, and no key is left twice.
func TestStoreBulkOverStored(t *testing.T) {
	ivs := testIntervals(t, "1m")
	cfg := testConfig(t)
	table := parse.NewSymbolTable("BTCUSDT")
	h := openHarness(t, cfg, table, ivs, nil)
	for i := range int64(10) {
		h.put(kl(ivs, 0, 0, t0+i*60_000, 10*i, 10*i+9, true))
	}
	h.put(kl(ivs, 0, 0, t0+10*60_000, 100, 103, false))
	h.close()

	cfg.Bulk = true
	h = openHarness(t, cfg, table, ivs, nil)
	for i := int64(5); i < 13; i++ {
		h.put(kl(ivs, 0, 0, t0+i*60_000, 10*i, 10*i+8, true)) // one trade fewer: new values
	}
	h.close()

	cfg.Bulk = false
	h = openHarness(t, cfg, table, ivs, nil)
	got := h.klines("BTCUSDT", "1m", -1, -1, 1000)
	if len(got) != 13 {
		t.Fatalf("%d klines, want 13", len(got))
	}
	for i, k := range got {
		last := 10*int64(i) + 9
		if i >= 5 {
			last--
		}
		if !k.Closed || k.OpenTime != t0+int64(i)*60_000 || k.LastAggID != last {
			t.Errorf("kline %d: open %d closed %v last %d, want last %d", i, k.OpenTime, k.Closed, k.LastAggID, last)
		}
	}
	if s := loadSeries(t, h.db, 0); len(s) != 1 || s[0].Through != 128 {
		t.Errorf("series %+v, want Through 128", s)
	}
}
