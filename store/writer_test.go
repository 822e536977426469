package store_test

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

const t0 = int64(1_700_000_040_000) // a whole minute, a whole 5 minutes

// TestStoreRoundTrip writes closed klines, extreme values included, and reads every
// field back exactly.
func TestStoreRoundTrip(t *testing.T) {
	ivs := testIntervals(t, "1m,5m")
	h := openHarness(t, testConfig(t), parse.NewSymbolTable("BTCUSDT", "ETHUSDT"), ivs, nil)
	var want []shard.Kline
	for i := range int64(20) {
		k := kl(ivs, 0, 0, t0+i*60_000, 100+10*i, 109+10*i, true)
		if i == 7 {
			k = kl(ivs, 0, 0, t0+i*60_000, 0, -1, true) // empty
		}
		if i == 11 { // the largest values the types hold
			k.Open, k.High = 1, parse.Decimal(^uint64(0))
			k.Volume, k.QuoteVolume = shard.MaxUint128, shard.MaxUint128
			k.TakerBuyVolume, k.TakerBuyQuoteVolume = shard.Uint128{Hi: 1}, shard.Uint128{Lo: 1}
			k.Flags = shard.FlagOverflow | shard.FlagGap
		}
		if i == 12 {
			k.Flags = shard.FlagREST | shard.FlagPartial
		}
		want = append(want, k)
	}
	h.put(want...)
	h.put(kl(ivs, 1, 1, t0, 5, 6, true))
	h.sync()
	got := h.klines("BTCUSDT", "1m", -1, -1, 1000)
	if len(got) != len(want) {
		t.Fatalf("read %d klines, wrote %d", len(got), len(want))
	}
	for i := range want {
		if !same(got[i], want[i]) {
			t.Errorf("kline %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if got := h.klines("ETHUSDT", "5m", -1, -1, 10); len(got) != 1 || !same(got[0], kl(ivs, 1, 1, t0, 5, 6, true)) {
		t.Errorf("ETHUSDT 5m = %+v", got)
	}
	if got := h.klines("ETHUSDT", "1m", -1, -1, 10); len(got) != 0 {
		t.Errorf("ETHUSDT 1m has %d klines, none written", len(got))
	}
	syms, err := h.db.Symbols(ctx, "futures")
	if err != nil || strings.Join(syms, ",") != "BTCUSDT,ETHUSDT" {
		t.Errorf("Symbols = %v, %v", syms, err)
	}
	ivNames, err := h.db.Intervals(ctx, "futures", "BTCUSDT")
	if err != nil || strings.Join(ivNames, ",") != "1m" {
		t.Errorf("Intervals = %v, %v", ivNames, err)
	}
	c := h.w.Counters()
	if c.Rows != 21 || c.Batches != 1 || c.WriteErrors != 0 || c.Lag != 0 || c.Bytes == 0 {
		t.Errorf("counters %+v", c)
	}
}

// TestStoreKlinesRange checks Binance's semantics for start, end and limit, and
// that the open kline is included.
func TestStoreKlinesRange(t *testing.T) {
	ivs := testIntervals(t, "1m")
	h := openHarness(t, testConfig(t), parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	for i := range int64(100) {
		h.put(kl(ivs, 0, 0, t0+i*60_000, 10*i, 10*i+9, true))
	}
	h.put(kl(ivs, 0, 0, t0+100*60_000, 1000, 1003, false))
	h.sync()
	at := func(i int64) int64 { return t0 + i*60_000 }
	cases := []struct {
		start, end int64
		limit      int
		first, n   int64
	}{
		{-1, -1, 500, 0, 101},  // everything
		{-1, -1, 10, 91, 10},   // the newest 10, the open one last
		{at(5), -1, 3, 5, 3},   // the oldest 3 from start
		{-1, at(50), 4, 47, 4}, // the newest 4 up to end
		{at(10), at(19), 1000, 10, 10},
		{at(10), at(19), 5, 10, 5}, // oldest first within [start, end]
		{at(10) + 1, at(12), 9, 11, 2},
		{at(200), -1, 9, 0, 0},
	}
	for _, c := range cases {
		got := h.klines("BTCUSDT", "1m", c.start, c.end, c.limit)
		if int64(len(got)) != c.n {
			t.Errorf("start %d end %d limit %d: %d klines, want %d", c.start, c.end, c.limit, len(got), c.n)
			continue
		}
		for j, k := range got {
			if k.OpenTime != at(c.first+int64(j)) {
				t.Errorf("start %d end %d limit %d: kline %d opens at %d, want %d", c.start, c.end, c.limit, j, k.OpenTime, at(c.first+int64(j)))
				break
			}
			if k.Closed != (k.OpenTime != at(100)) {
				t.Errorf("kline at %d closed = %v", k.OpenTime, k.Closed)
			}
		}
	}
	if _, err := h.db.Klines(ctx, "futures", "BTCUSDT", "1m", -1, -1, 0); err == nil {
		t.Error("limit 0 accepted")
	}
}

// TestStoreCorrections replaces a closed kline by its correction and ORs marks into
// the stored flags.
func TestStoreCorrections(t *testing.T) {
	ivs := testIntervals(t, "1m")
	h := openHarness(t, testConfig(t), parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	h.put(kl(ivs, 0, 0, t0, 1, 5, true), kl(ivs, 0, 0, t0+60_000, 6, 9, true))
	h.sync()
	fixed := kl(ivs, 0, 0, t0, 1, 6, true)
	fixed.Flags |= shard.FlagCorrected
	h.put(fixed)
	// A correction and its mark in the same batch apply in order.
	h.put(shard.Kline{Symbol: 0, Interval: 0, OpenTime: t0 + 60_000, CloseTime: t0 + 119_999, Closed: true, Mark: true, Flags: shard.FlagLate})
	h.put(shard.Kline{Symbol: 0, Interval: 0, OpenTime: t0 - 60_000, CloseTime: t0 - 1, Closed: true, Mark: true, Flags: shard.FlagGap})
	h.sync()
	got := h.klines("BTCUSDT", "1m", -1, -1, 10)
	if len(got) != 2 {
		t.Fatalf("%d klines, want 2", len(got))
	}
	if !same(got[0], fixed) {
		t.Errorf("corrected kline:\n got %+v\nwant %+v", got[0], fixed)
	}
	want := kl(ivs, 0, 0, t0+60_000, 6, 9, true)
	want.Flags |= shard.FlagLate
	if !same(got[1], want) {
		t.Errorf("marked kline:\n got %+v\nwant %+v", got[1], want)
	}
	if c := h.w.Counters(); c.Rows != 3 || c.Marks != 1 || c.MarksMissing != 1 {
		t.Errorf("counters %+v", c)
	}
}

// TestStoreOpenKlines checks coalescing, that a closed row is never replaced by an
// open state, and that an older period still open keeps its row beside a newer
// one's, each updated until its closed state replaces it.
func TestStoreOpenKlines(t *testing.T) {
	ivs := testIntervals(t, "1m")
	h := openHarness(t, testConfig(t), parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	for last := int64(1); last <= 50; last++ {
		h.put(kl(ivs, 0, 0, t0, 1, last, false))
	}
	h.sync()
	got := h.klines("BTCUSDT", "1m", -1, -1, 10)
	if len(got) != 1 || got[0].Closed || got[0].LastAggID != 50 {
		t.Fatalf("after 50 updates: %+v", got)
	}
	if c := h.w.Counters(); c.OpenRows != 1 {
		t.Errorf("50 updates wrote %d open rows, want 1 (coalesced)", c.OpenRows)
	}
	// t0 gets two more trades and the next period its first ones, handed over
	// oldest first as the aggregator does, while t0 is still open (grace): both
	// rows are stored, and Through covers them.
	h.put(kl(ivs, 0, 0, t0, 1, 52, false))
	h.put(kl(ivs, 0, 0, t0+60_000, 53, 55, false))
	h.sync()
	got = h.klines("BTCUSDT", "1m", -1, -1, 10)
	if len(got) != 2 || got[0].Closed || got[0].LastAggID != 52 || got[1].Closed || got[1].LastAggID != 55 {
		t.Fatalf("two open periods: %+v", got)
	}
	if series := loadSeries(t, h.db, 0); len(series) != 1 || series[0].Through != 55 {
		t.Fatalf("Through = %+v, want 55", series)
	}
	// Updates of both, coalesced per kline, then t0 closes; a late update of t0 is stale.
	h.put(kl(ivs, 0, 0, t0, 1, 53, false))
	h.put(kl(ivs, 0, 0, t0+60_000, 53, 56, false))
	h.put(kl(ivs, 0, 0, t0, 1, 54, false))
	h.put(kl(ivs, 0, 0, t0+60_000, 53, 57, false))
	h.sync()
	got = h.klines("BTCUSDT", "1m", -1, -1, 10)
	if len(got) != 2 || got[0].LastAggID != 54 || got[1].LastAggID != 57 {
		t.Fatalf("after updates of both: %+v", got)
	}
	h.put(kl(ivs, 0, 0, t0, 1, 54, true))
	h.put(kl(ivs, 0, 0, t0, 1, 50, false)) // stale: t0 is closed
	h.sync()
	got = h.klines("BTCUSDT", "1m", -1, -1, 10)
	if len(got) != 2 || !got[0].Closed || got[0].LastAggID != 54 || got[1].Closed || got[1].LastAggID != 57 {
		t.Fatalf("after the close: %+v", got)
	}
	// An older period's update and its close in one batch: the close wins.
	h.put(kl(ivs, 0, 0, t0+120_000, 58, 58, false))
	h.put(kl(ivs, 0, 0, t0+60_000, 53, 57, false))
	h.put(kl(ivs, 0, 0, t0+60_000, 53, 57, true))
	h.sync()
	got = h.klines("BTCUSDT", "1m", -1, -1, 10)
	if len(got) != 3 || !got[1].Closed || got[2].Closed || got[2].LastAggID != 58 {
		t.Fatalf("after the second close: %+v", got)
	}
	if c := h.w.Counters(); c.OlderOpen != 3 || c.StaleUpdates != 1 {
		t.Errorf("counters %+v", c)
	}
	if err := h.w.Close(); err != nil {
		t.Fatal(err)
	}
	h.w = nil
}

func loadSeries(t *testing.T, db *store.DB, since int64) []store.Series {
	t.Helper()
	s, err := db.LoadSeries(ctx, "futures", since)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStoreRestart stores klines, reopens the database, and checks what LoadSeries
// hands the daemon, and that the new writer knows the stored open kline.
func TestStoreRestart(t *testing.T) {
	ivs := testIntervals(t, "1m,5m")
	cfg := testConfig(t)
	table := parse.NewSymbolTable("BTCUSDT", "ETHUSDT")
	h := openHarness(t, cfg, table, ivs, nil)
	for i := range int64(10) {
		h.put(kl(ivs, 0, 0, t0+i*60_000, 10*i, 10*i+9, true))
	}
	h.put(kl(ivs, 0, 0, t0+10*60_000, 100, 104, false))
	h.put(kl(ivs, 0, 1, t0, 0, 49, true), kl(ivs, 0, 1, t0+300_000, 50, 104, false))
	h.put(kl(ivs, 1, 0, t0, 0, -1, true)) // an empty kline only
	h.close()

	h = openHarness(t, cfg, table, ivs, nil)
	series := loadSeries(t, h.db, t0+8*60_000)
	got := map[string]store.Series{}
	for _, s := range series {
		got[s.Symbol+" "+s.Interval] = s
	}
	check := func(key string, through int64, opens ...int64) {
		t.Helper()
		s, ok := got[key]
		if !ok {
			t.Errorf("%s: not loaded", key)
			return
		}
		if s.Through != through {
			t.Errorf("%s: Through %d, want %d", key, s.Through, through)
		}
		var have []int64
		for _, k := range s.Klines {
			have = append(have, k.OpenTime)
		}
		if fmt.Sprint(have) != fmt.Sprint(opens) {
			t.Errorf("%s: klines open at %v, want %v", key, have, opens)
		}
	}
	check("BTCUSDT 1m", 104, t0+8*60_000, t0+9*60_000, t0+10*60_000)
	check("BTCUSDT 5m", 104, t0+300_000) // the open one, though older than closedSince would not matter
	check("ETHUSDT 1m", -1)
	if len(series) != 3 {
		t.Errorf("%d series, want 3", len(series))
	}
	if s := got["BTCUSDT 1m"]; len(s.Klines) == 3 && s.Klines[2].Closed {
		t.Error("the open kline came back closed")
	}
	// The stored open 1m kline (t0+10m) stays beside the next period's, until
	// its closed state replaces it.
	h.put(kl(ivs, 0, 0, t0+11*60_000, 110, 111, false))
	h.sync()
	if ks := h.klines("BTCUSDT", "1m", t0+10*60_000, -1, 5); len(ks) != 2 || ks[0].Closed || ks[1].Closed || ks[1].LastAggID != 111 {
		t.Errorf("after a restart, the next period's update: %+v", ks)
	}
	h.put(kl(ivs, 0, 0, t0+10*60_000, 100, 109, true))
	h.sync()
	if ks := h.klines("BTCUSDT", "1m", t0+10*60_000, -1, 5); len(ks) != 2 || !ks[0].Closed || ks[0].LastAggID != 109 || ks[1].LastAggID != 111 {
		t.Errorf("after the close: %+v", ks)
	}
}

// TestStoreRetention deletes 1m klines older than an hour in small batches and
// keeps 5m klines forever.
func TestStoreRetention(t *testing.T) {
	ivs := testIntervals(t, "1m,5m")
	cfg := testConfig(t)
	cfg.Retention = map[string]time.Duration{"1m": time.Hour, "5m": 0}
	cfg.RetentionBatch = 37
	cfg.RetentionEvery = time.Millisecond
	cfg.CommitEvery = 5 * time.Millisecond
	h := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT", "ETHUSDT"), ivs, nil)
	const minutes = 180
	for i := range int64(minutes) {
		for s := range uint32(2) {
			h.put(kl(ivs, s, 0, t0+i*60_000, 10*i, 10*i+9, true))
			if i%5 == 0 {
				h.put(kl(ivs, s, 1, t0+i*60_000, 10*i, 10*i+49, true))
			}
		}
	}
	h.sync()
	// newest open time t0+179m: keep 1m klines opening at or after t0+119m.
	const kept = 61
	want := uint64(2 * (minutes - kept))
	deadline := time.Now().Add(30 * time.Second)
	for h.w.Counters().Deleted < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if d := h.w.Counters().Deleted; d != want {
		t.Fatalf("retention deleted %d rows, want %d", d, want)
	}
	for _, sym := range []string{"BTCUSDT", "ETHUSDT"} {
		ks := h.klines(sym, "1m", -1, -1, 1000)
		if len(ks) != kept || ks[0].OpenTime != t0+(minutes-kept)*60_000 {
			t.Errorf("%s 1m: %d klines left, first at %d; want %d from %d", sym, len(ks), ks[0].OpenTime, kept, t0+(minutes-kept)*60_000)
		}
		if ks := h.klines(sym, "5m", -1, -1, 1000); len(ks) != minutes/5 {
			t.Errorf("%s 5m: %d klines, want all %d", sym, len(ks), minutes/5)
		}
	}
	if s := loadSeries(t, h.db, 0); s[0].Through != 10*(minutes-1)+9 {
		t.Errorf("Through %d after retention, want %d", s[0].Through, 10*(minutes-1)+9)
	}
}

// TestStoreDiskFull fills a capped database: the failure is logged at once, retried,
// and after FailAfter Kline and Close return a clear error.
func TestStoreDiskFull(t *testing.T) {
	ivs := testIntervals(t, "1m")
	cfg := testConfig(t)
	cfg.MaxBytes = 128 << 10
	cfg.FailAfter = 300 * time.Millisecond
	cfg.RetryMin = 10 * time.Millisecond
	cfg.CommitEvery = 5 * time.Millisecond
	core, logs := observer.New(zapcore.InfoLevel)
	h := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT"), ivs, zap.New(core))
	var err error
	for i := int64(0); i < 1_000_000 && err == nil; i++ {
		k := kl(ivs, 0, 0, t0+i*60_000, 10*i, 10*i+9, true)
		err = h.w.Kline(&k)
	}
	if err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("Kline error %v, want the database full error", err)
	}
	if err := h.w.Close(); err == nil || !strings.Contains(err.Error(), "full") {
		t.Errorf("Close error %v", err)
	}
	h.w = nil
	first := logs.FilterMessageSnippet("cannot commit klines").All()
	if len(first) != 1 || first[0].Level != zapcore.ErrorLevel {
		t.Errorf("first failure logged %d times, want once at error level", len(first))
	}
	if len(logs.FilterMessageSnippet("giving up").All()) != 1 {
		t.Error("giving up not logged")
	}
}

// TestStoreBusyRecovers holds the database's write lock from another connection: the
// writer retries, the queue fills and Kline blocks (backpressure), and when the lock
// goes every kline is stored.
func TestStoreBusyRecovers(t *testing.T) {
	ivs := testIntervals(t, "1m")
	cfg := testConfig(t)
	cfg.BusyTimeout = 5 * time.Millisecond
	cfg.RetryMin = 5 * time.Millisecond
	cfg.RetryMax = 20 * time.Millisecond
	cfg.MaxQueue = 50
	cfg.BatchRows = 10
	h := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	other, err := sql.Open("sqlite3", "file:"+cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	go func() {
		// Hold the lock until the writer has failed a few times and Kline blocks.
		for h.w.Counters().WriteErrors < 3 || h.w.Counters().BackpressureWaits == 0 {
			time.Sleep(time.Millisecond)
		}
		conn.ExecContext(ctx, "ROLLBACK")
		conn.Close()
		close(release)
	}()
	const n = 500
	for i := range int64(n) {
		h.put(kl(ivs, 0, 0, t0+i*60_000, 10*i, 10*i+9, true))
	}
	<-release
	h.sync()
	if ks := h.klines("BTCUSDT", "1m", -1, -1, 1000); len(ks) != n {
		t.Errorf("%d klines stored, want %d", len(ks), n)
	}
	c := h.w.Counters()
	if c.WriteErrors < 3 || c.BackpressureWaits == 0 || c.Rows != n {
		t.Errorf("counters %+v", c)
	}
}

// TestStoreWriterErrors covers misuse: a second writer, a read-only DB, an interval
// the writer does not know, Kline after Close.
func TestStoreWriterErrors(t *testing.T) {
	ivs := testIntervals(t, "1m")
	h := openHarness(t, testConfig(t), parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	if _, err := store.NewWriter(ctx, h.db, h.symbols, ivs, nil); err == nil {
		t.Error("a second writer on one DB")
	}
	k := kl(ivs, 0, 0, t0, 1, 2, true)
	k.Interval = 3
	if err := h.w.Kline(&k); err == nil {
		t.Error("an unknown interval accepted")
	}
	h.w.Close()
	k.Interval = 0
	if err := h.w.Kline(&k); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Kline after Close: %v", err)
	}
	h.w = nil
}

// TestStoreKlineAllocs proves the sink side allocates nothing in steady state: a
// closed kline is a copy into the queue, an update a copy into its series' state.
func TestStoreKlineAllocs(t *testing.T) {
	ivs := testIntervals(t, "1m")
	h := openHarness(t, testConfig(t), parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	closed := kl(ivs, 0, 0, t0, 1, 5, true)
	update := kl(ivs, 0, 0, t0+60_000, 6, 9, false)
	for range 2000 { // grow the queue once
		h.put(closed, update)
	}
	h.sync()
	for range 2000 {
		h.put(closed)
	}
	h.sync() // the spare buffer has grown too
	n := testing.AllocsPerRun(1000, func() {
		if err := h.w.Kline(&closed); err != nil {
			t.Fatal(err)
		}
		if err := h.w.Kline(&update); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("Kline allocates %.1f times per call pair, want 0", n)
	}
}

// TestStoreBadValues edits stored klines behind the writer's back (a REAL, a
// non-decimal text, a negative integer, a NULL in a decimal column): reads fail
// with a clear error, never a wrong value or a panic.
func TestStoreBadValues(t *testing.T) {
	ivs := testIntervals(t, "1m")
	cfg := testConfig(t)
	h := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	h.put(kl(ivs, 0, 0, t0, 1, 5, true))
	h.sync()
	raw, err := sql.Open("sqlite3", "file:"+cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, bad := range []string{"1.5", "'abc'", "-7", "NULL", "'1e5'", "x'3132'"} {
		if _, err := raw.Exec("UPDATE klines SET high = " + bad); err != nil {
			if bad == "NULL" && strings.Contains(err.Error(), "NOT NULL") {
				continue
			}
			t.Fatal(err)
		}
		if ks, err := h.db.Klines(ctx, "futures", "BTCUSDT", "1m", -1, -1, 10); err == nil {
			t.Errorf("high = %s read as %+v", bad, ks)
		} else if !strings.Contains(err.Error(), "decimal") && !strings.Contains(err.Error(), "price") {
			t.Errorf("high = %s: unclear error %v", bad, err)
		}
	}
}
