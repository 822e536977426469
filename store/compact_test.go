package store_test

import (
	"database/sql"
	"testing"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// rowOrder returns the open times of a series' klines in table (rowid) order.
func rowOrder(t *testing.T, path, symbol string) (opens, rowids []int64) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT k.open_time, k.rowid FROM klines k JOIN series s ON s.id = k.series WHERE s.symbol = ? ORDER BY k.rowid", symbol)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var o, r int64
		if err := rows.Scan(&o, &r); err != nil {
			t.Fatal(err)
		}
		opens, rowids = append(opens, o), append(rowids, r)
	}
	return opens, rowids
}

// TestStoreCompact writes klines as the daemon does, one commit per market
// minute, and checks that each window over is rewritten so that a series' klines
// of the window are neighbours in the table, values, order and Through unchanged,
// that the window still open is not, and that a later correction still replaces
// its compacted kline.
func TestStoreCompact(t *testing.T) {
	ivs := testIntervals(t, "1m")
	cfg := testConfig(t)
	cfg.Compact = 10 * time.Minute
	cfg.RetentionEvery = time.Millisecond
	h := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT", "ETHUSDT"), ivs, nil)
	const base = int64(1_700_000_400_000) // a whole 10 minutes
	var want []shard.Kline
	for i := range int64(40) {
		for s := range uint32(2) {
			k := kl(ivs, s, 0, base+i*60_000, 10*i, 10*i+9, true)
			h.put(k)
			if s == 0 {
				want = append(want, k)
			}
		}
		h.sync()
		time.Sleep(2 * time.Millisecond)
	}
	// Windows [0, 10), [10, 20) and [20, 30) minutes are over (the newest kline
	// opened at least 2.5 minutes after their end); [30, 40) is not yet.
	for tries := 0; h.w.Counters().Compacted < 60 && tries < 500; tries++ {
		time.Sleep(2 * time.Millisecond)
		h.sync()
	}
	if c := h.w.Counters().Compacted; c != 60 {
		t.Fatalf("compacted %d rows, want 60", c)
	}
	opens, rowids := rowOrder(t, cfg.Path, "BTCUSDT")
	byOpen := map[int64]int64{}
	for i, o := range opens {
		byOpen[o] = rowids[i]
	}
	for w := int64(0); w < 4; w++ {
		first := byOpen[base+w*600_000]
		together := true
		for i := int64(1); i < 10; i++ {
			if byOpen[base+(w*10+i)*60_000] != first+i {
				together = false
			}
		}
		if together != (w < 3) {
			t.Errorf("window %d: klines neighbours %v, want %v (rowids by open time %v)", w, together, w < 3, byOpen)
		}
	}
	got := h.klines("BTCUSDT", "1m", -1, -1, 1000)
	if len(got) != len(want) {
		t.Fatalf("%d klines, want %d", len(got), len(want))
	}
	for i := range want {
		if !same(got[i], want[i]) {
			t.Errorf("kline %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	fixed := kl(ivs, 0, 0, base+3*60_000, 30, 41, true)
	fixed.Flags |= shard.FlagCorrected
	h.put(fixed)
	h.sync()
	if got := h.klines("BTCUSDT", "1m", base+3*60_000, base+3*60_000, 5); len(got) != 1 || !same(got[0], fixed) {
		t.Errorf("correction of a compacted kline: %+v", got)
	}
	if s := loadSeries(t, h.db, 0); s[0].Through != 399 {
		t.Errorf("Through %d, want 399", s[0].Through)
	}
}

// TestStoreCompactSkipsRuns writes three hours of klines in one commit (as a
// catch-up does): every window's klines already come in long runs, so none is
// rewritten.
func TestStoreCompactSkipsRuns(t *testing.T) {
	ivs := testIntervals(t, "1m")
	cfg := testConfig(t)
	cfg.RetentionEvery = time.Millisecond
	h := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT", "ETHUSDT"), ivs, nil)
	const base = int64(1_699_999_200_000) // a whole hour
	for i := range int64(181) {
		for s := range uint32(2) {
			h.put(kl(ivs, s, 0, base+i*60_000, 10*i, 10*i+9, true))
		}
		if i == 0 { // the writer starts compacting from this window
			h.sync()
			time.Sleep(2 * time.Millisecond)
		}
	}
	h.sync()
	db, err := sql.Open("sqlite3", "file:"+cfg.Path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var until int64
	for tries := 0; until < base+2*3_600_000 && tries < 500; tries++ {
		time.Sleep(2 * time.Millisecond)
		h.sync()
		if err := db.QueryRow("SELECT value FROM meta WHERE key = 'compacted_until:futures'").Scan(&until); err != nil {
			t.Fatal(err)
		}
	}
	if until != base+2*3_600_000 {
		t.Fatalf("compacted until %d, want %d (two windows over)", until, base+2*3_600_000)
	}
	if c := h.w.Counters().Compacted; c != 0 {
		t.Errorf("compacted %d rows written in runs of 30 and 60", c)
	}
}
