package store_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// restOf returns the REST kline Binance would print for k.
func restOf(k shard.Kline) store.RESTKline {
	return store.RESTKline{
		OpenTime: k.OpenTime, CloseTime: k.CloseTime, Trades: k.Count,
		Open: k.Open.String(), High: k.High.String(), Low: k.Low.String(), Close: k.Close.String(),
		Volume: string(k.Volume.AppendDecimal(nil, parse.Scale)), QuoteVolume: string(k.QuoteVolume.AppendDecimal(nil, 2*parse.Scale)),
		TakerBuyVolume:      string(k.TakerBuyVolume.AppendDecimal(nil, parse.Scale)),
		TakerBuyQuoteVolume: string(k.TakerBuyQuoteVolume.AppendDecimal(nil, 2*parse.Scale)),
	}
}

// TestBackfillPutRESTRules checks every row of the table in backfill.go: what a
// REST kline replaces and what it leaves alone.
func TestBackfillPutRESTRules(t *testing.T) {
	cfg := testConfig(t)
	ivs := testIntervals(t, "1m")
	syms := parse.NewSymbolTable("BTCUSDT")
	h := openHarness(t, cfg, syms, ivs, nil)
	const m = 60_000
	base := int64(1_700_000_040_000) // a minute boundary
	trade := kl(ivs, 0, 0, base, 10, 12, true)
	partial := kl(ivs, 0, 0, base+m, 13, 14, true)
	partial.Flags |= shard.FlagPartial
	gap := kl(ivs, 0, 0, base+2*m, 15, 16, true)
	gap.Flags |= shard.FlagGap
	late := kl(ivs, 0, 0, base+3*m, 17, 18, true)
	late.Flags |= shard.FlagLate
	open := kl(ivs, 0, 0, base+6*m, 19, 19, false)
	h.put(trade, partial, gap, late, open)
	h.sync()

	// REST's klines for the same periods, different numbers (Binance's whole
	// klines), plus two periods nobody stored.
	var rest []store.RESTKline
	var want []shard.Kline
	for i := range int64(7) {
		k := kl(ivs, 0, 0, base+i*m, 1000+10*i, 1003+10*i, true)
		rest = append(rest, restOf(k))
		k.Flags = shard.FlagREST
		k.FirstTradeID, k.LastTradeID, k.FirstAggID, k.LastAggID = -1, -1, -1, -1
		want = append(want, k)
	}
	res, err := h.db.PutREST(ctx, cfg.Market, "BTCUSDT", ivs[0], rest)
	if err != nil {
		t.Fatal(err)
	}
	// Kept: the trade-built one, the late one (late is not a reason). The open
	// one is an earlier run's, never to be closed: REST's replaces it.
	if res.Written != 5 || res.Kept != 2 {
		t.Fatalf("PutREST = %+v, want 5 written 2 kept", res)
	}
	got := h.klines("BTCUSDT", "1m", base, -1, 100)
	if len(got) != 7 {
		t.Fatalf("%d klines stored, want 7", len(got))
	}
	expect := []shard.Kline{trade, want[1], want[2], late, want[4], want[5], want[6]}
	for i := range expect {
		if !same(got[i], expect[i]) {
			t.Errorf("kline %d:\n got %+v\nwant %+v", i, got[i], expect[i])
		}
	}

	// A second REST answer replaces REST rows (the newest wins).
	again := kl(ivs, 0, 0, base+4*m, 5000, 5001, true)
	if res, err = h.db.PutREST(ctx, cfg.Market, "BTCUSDT", ivs[0], []store.RESTKline{restOf(again)}); err != nil || res.Written != 1 {
		t.Fatalf("PutREST over a REST row = %+v, %v", res, err)
	}
	// And the pipeline's row always wins over REST's: a trade-built kline
	// (a resumed trade, say) replaces the REST row.
	fromTrades := kl(ivs, 0, 0, base+5*m, 30, 31, true)
	h.put(fromTrades)
	h.sync()
	got = h.klines("BTCUSDT", "1m", base+4*m, base+5*m, 10)
	again.Flags = shard.FlagREST
	again.FirstTradeID, again.LastTradeID, again.FirstAggID, again.LastAggID = -1, -1, -1, -1
	if len(got) != 2 || !same(got[0], again) || !same(got[1], fromTrades) {
		t.Fatalf("after a second answer and a trade-built kline:\n%+v", got)
	}

	// Through counts trades only: REST rows never raise it.
	series, err := h.db.LoadSeries(ctx, cfg.Market, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 1 || series[0].Through != 31 {
		t.Fatalf("series = %+v, want Through 31", series)
	}
}

func TestBackfillPutRESTBadInput(t *testing.T) {
	cfg := testConfig(t)
	ivs := testIntervals(t, "1m")
	h := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	good := restOf(kl(ivs, 0, 0, 1_700_000_040_000, 1, 2, true))
	cases := map[string]func(r *store.RESTKline){
		"off grid":    func(r *store.RESTKline) { r.OpenTime++ },
		"close time":  func(r *store.RESTKline) { r.CloseTime-- },
		"price":       func(r *store.RESTKline) { r.High = "1e5" },
		"volume":      func(r *store.RESTKline) { r.Volume = "-1" },
		"too precise": func(r *store.RESTKline) { r.Close = "1.000000001" },
		"empty":       func(r *store.RESTKline) { r.QuoteVolume = "" },
		"trades":      func(r *store.RESTKline) { r.Trades = -1 },
	}
	for name, f := range cases {
		bad := good
		bad.OpenTime += 60_000
		bad.CloseTime += 60_000
		f(&bad)
		_, err := h.db.PutREST(ctx, cfg.Market, "BTCUSDT", ivs[0], []store.RESTKline{good, bad})
		if !errors.Is(err, store.ErrBadREST) {
			t.Errorf("%s: err = %v, want ErrBadREST", name, err)
		}
	}
	// Nothing of a failed page is stored.
	if got := h.klines("BTCUSDT", "1m", -1, -1, 10); len(got) != 0 {
		t.Fatalf("%d klines stored from bad pages", len(got))
	}
}

func TestBackfillCoverage(t *testing.T) {
	cfg := testConfig(t)
	ivs := testIntervals(t, "1m,1h")
	h := openHarness(t, cfg, parse.NewSymbolTable("AUSDT", "BUSDT"), ivs, nil)
	const m = 60_000
	base := int64(1_700_000_040_000)
	h.put(kl(ivs, 0, 0, base+5*m, 1, 1, true), kl(ivs, 0, 0, base+6*m, 2, 2, false), kl(ivs, 1, 0, base, 1, 1, false))
	h.sync()
	var rest []store.RESTKline
	for i := range int64(3) {
		rest = append(rest, restOf(kl(ivs, 0, 0, base+(2+i)*m, 1, 1, true)))
	}
	if _, err := h.db.PutREST(ctx, cfg.Market, "AUSDT", ivs[0], rest); err != nil {
		t.Fatal(err)
	}
	// A series with REST rows only (no trade yet).
	hour := base - base%3600_000 - 3600_000
	if _, err := h.db.PutREST(ctx, cfg.Market, "CUSDT", ivs[1], []store.RESTKline{restOf(kl(ivs, 0, 1, hour, 1, 1, true))}); err != nil {
		t.Fatal(err)
	}
	cov, err := h.db.Coverage(ctx, cfg.Market)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Coverage{
		{Symbol: "AUSDT", Interval: "1m", Oldest: base + 2*m, Rows: true, OldestTrades: base + 5*m, Trades: true},
		{Symbol: "BUSDT", Interval: "1m", Oldest: base, Rows: true, OldestTrades: base, Trades: true},
		{Symbol: "CUSDT", Interval: "1h", Oldest: hour, Rows: true},
	}
	if len(cov) != len(want) {
		t.Fatalf("coverage = %+v", cov)
	}
	for i := range want {
		if cov[i] != want[i] {
			t.Errorf("coverage[%d] = %+v, want %+v", i, cov[i], want[i])
		}
	}

	// What a restart finds stored, and the first kline a later run builds.
	newest, err := h.db.Newest(ctx, cfg.Market)
	if err != nil {
		t.Fatal(err)
	}
	wantNewest := map[string]int64{"AUSDT\x001m": base + 6*m, "BUSDT\x001m": base, "CUSDT\x001h": hour}
	if len(newest) != len(wantNewest) {
		t.Errorf("newest = %v, want %v", newest, wantNewest)
	}
	for k, v := range wantNewest {
		if newest[k] != v {
			t.Errorf("newest[%q] = %d, want %d", k, newest[k], v)
		}
	}
	for _, c := range []struct {
		sym, iv string
		after   int64
		want    int64
		ok      bool
	}{
		{"AUSDT", "1m", base, base + 5*m, true}, // REST rows skipped
		{"AUSDT", "1m", base + 5*m, base + 6*m, true},
		{"AUSDT", "1m", base + 6*m, 0, false},
		{"CUSDT", "1h", 0, 0, false}, // REST rows only
		{"DUSDT", "1m", 0, 0, false}, // no such series
	} {
		got, ok, err := h.db.FirstTradesAfter(ctx, cfg.Market, c.sym, c.iv, c.after)
		if err != nil || got != c.want || ok != c.ok {
			t.Errorf("FirstTradesAfter(%s %s, %d) = %d, %v, %v; want %d, %v", c.sym, c.iv, c.after, got, ok, err, c.want, c.ok)
		}
	}
}

// BenchmarkBackfillPutREST measures one page of REST klines in its own
// transaction: how long PutREST holds the database's write lock, during which
// the pipeline's Writer would wait.
//
//	go test -run '^$' -bench BackfillPutREST -benchtime 200x ./store/
func BenchmarkBackfillPutREST(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run("klines="+strconv.Itoa(n), func(b *testing.B) {
			cfg := testConfig(b)
			ivs := testIntervals(b, "1m")
			h := openHarness(b, cfg, parse.NewSymbolTable("BTCUSDT"), ivs, nil)
			base := int64(1_700_000_040_000)
			page := make([]store.RESTKline, n)
			for j := range page {
				page[j] = restOf(kl(ivs, 0, 0, base+int64(j)*60_000, 1, 3, true))
			}
			b.ReportAllocs()
			for b.Loop() { // the first inserts, the others replace REST rows
				if _, err := h.db.PutREST(ctx, cfg.Market, "BTCUSDT", ivs[0], page); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/page")
		})
	}
}

// BenchmarkBackfillWriterCommit measures what a backfill costs the pipeline's
// Writer: the time of a commit of 500 closed klines (Sync) alone, and while
// another goroutine stores pages of 1000 REST klines back to back (a worst
// case: the real backfill writes a page per REST answer, a few a second under
// Binance's weight limit). Reported: mean and max commit time.
//
//	go test -run '^$' -bench BackfillWriterCommit -benchtime 100x ./store/
func BenchmarkBackfillWriterCommit(b *testing.B) {
	for _, busy := range []bool{false, true} {
		b.Run("backfill="+strconv.FormatBool(busy), func(b *testing.B) {
			cfg := testConfig(b)
			ivs := testIntervals(b, "1m")
			names := make([]string, 500)
			for i := range names {
				names[i] = "S" + strconv.Itoa(i) + "USDT"
			}
			h := openHarness(b, cfg, parse.NewSymbolTable(names...), ivs, nil)
			page := make([]store.RESTKline, 1000)
			for j := range page {
				page[j] = restOf(kl(ivs, 0, 0, 1_600_000_020_000+int64(j)*60_000, 1, 3, true))
			}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; busy; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := h.db.PutREST(ctx, cfg.Market, names[i%len(names)], ivs[0], page); err != nil {
						b.Error(err)
						return
					}
				}
			}()
			open := int64(1_700_000_040_000)
			var worst time.Duration
			for b.Loop() {
				for s := range uint32(500) {
					k := kl(ivs, s, 0, open, 1, 2, true)
					h.put(k)
				}
				open += 60_000
				t0 := time.Now()
				h.sync()
				worst = max(worst, time.Since(t0))
			}
			close(stop)
			<-done
			b.ReportMetric(float64(worst.Microseconds()), "max-µs/commit")
		})
	}
}
