package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap/zaptest"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/feed"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// klinesLog records the klines requests a client sends.
type klinesLog struct {
	mu   sync.Mutex
	reqs []klinesRequest
	next http.RoundTripper
}

type klinesRequest struct {
	symbol, interval string
	start, end       int64
}

func (l *klinesLog) RoundTrip(r *http.Request) (*http.Response, error) {
	if filepath.Base(r.URL.Path) == "klines" {
		q := r.URL.Query()
		start, _ := strconv.ParseInt(q.Get("startTime"), 10, 64)
		end, _ := strconv.ParseInt(q.Get("endTime"), 10, 64)
		l.mu.Lock()
		l.reqs = append(l.reqs, klinesRequest{q.Get("symbol"), q.Get("interval"), start, end})
		l.mu.Unlock()
	}
	return l.next.RoundTrip(r)
}

func (l *klinesLog) all() []klinesRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]klinesRequest(nil), l.reqs...)
}

// replayServer starts a futures fakex replaying the real XRPETH aggTrades
// (2019-10-11 00:00 to 10-13 11:19 UTC) under the names given, and returns it
// once the replay is over: its REST klines serve all of it.
func replayServer(t *testing.T, names []string) *fakex.Server {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "data", "binance", "XRPETH-aggTrades-2019-10-11.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src); err != nil {
		t.Skipf("real Binance data not available (%v): this test needs ../shared/data/binance next to the project", err)
	}
	cfg := fakex.DefaultConfig()
	cfg.Speed = 0
	for _, n := range names {
		p := filepath.Join(t.TempDir(), n+"-aggTrades-2019-10-11.csv")
		if err := os.Symlink(src, p); err != nil {
			t.Fatal(err)
		}
		cfg.Replay = append(cfg.Replay, p)
	}
	srv := startFakex(t, cfg)
	select {
	case <-srv.Done():
	case <-time.After(time.Minute):
		t.Fatal("fakex replay did not finish in a minute")
	}
	return srv
}

// startFakex starts a fake exchange, closed when the test ends.
func startFakex(t *testing.T, cfg fakex.Config) *fakex.Server {
	t.Helper()
	srv, err := fakex.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// backfillStore opens a new database with a writer for names and intervals;
// both are closed when the test ends.
func backfillStore(t *testing.T, names []string, intervals string) ([]shard.Interval, *store.DB, *store.Writer) {
	t.Helper()
	ivs, err := shard.ParseIntervals(intervals)
	if err != nil {
		t.Fatal(err)
	}
	scfg := store.DefaultConfig()
	scfg.Path = filepath.Join(t.TempDir(), "k.db")
	db, err := store.Open(context.Background(), scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w, err := store.NewWriter(context.Background(), db, parse.NewSymbolTable(names...), ivs, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return ivs, db, w
}

// backfillRun is one daemon run's backfill: a session on fakex (its REST
// scheduler; no WebSocket) and the driver on db.
type backfillRun struct {
	cancel context.CancelFunc
	live   *feed.Session
	p      *backfillProgress
	log    *klinesLog
}

func startBackfillRun(t *testing.T, srv *fakex.Server, db *store.DB, names []string, ivs []shard.Interval, depth int) *backfillRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lcfg := feed.DefaultConfig(exchange.Futures)
	lcfg.Endpoints.REST, lcfg.Endpoints.WS = srv.RESTURL(), srv.WSURL()
	lcfg.Symbols = names
	l := &klinesLog{next: http.DefaultTransport}
	lcfg.Client.HTTP = &http.Client{Transport: l, Timeout: 30 * time.Second}
	lcfg.Workers = 1
	live, err := feed.New(ctx, lcfg, parse.NewSymbolTable(), zaptest.NewLogger(t))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	live.Start(ctx, nil) // the REST workers; no pipeline: the trade rows are the test's
	opt := defaultBackfillOptions()
	opt.settle, opt.rescan, opt.every, opt.bar = 10*time.Millisecond, time.Hour, 100*time.Millisecond, false
	opt.fetch.InFlight = 2
	p := newBackfill(live, db, "futures", ivs, depth, opt, zaptest.NewLogger(t))
	p.start(ctx)
	return &backfillRun{cancel: cancel, live: live, p: p, log: l}
}

// finish waits until the backfill is done (ready), then stops the run.
func (r *backfillRun) finish(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for r.p.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("backfill not done after %v: %v", within, r.p.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.stop()
}

func (r *backfillRun) stop() {
	r.cancel()
	r.p.wait()
	r.live.Wait()
}

// TestBackfillRestart runs the backfill of 3 symbols x (1m, 1h), 2500 klines
// deep, before trade-built klines the test stores (the daemon's first), stops
// it half way, and runs it again on the same database. The second run must ask
// only for what the first did not store, in exactly the pages that takes; the
// store must end with fakex's klines for every series, flagged REST, and the
// trade-built rows untouched.
func TestBackfillRestart(t *testing.T) {
	names := []string{"AAAUSDT", "BBBUSDT", "CCCUSDT"}
	const depth = 2500
	srv := replayServer(t, names)
	ivs, db, w := backfillStore(t, names, "1m,1h")
	// The daemon's first klines from trades: a partial one, then a whole one,
	// from 2019-10-13 00:00 UTC on (1m: 2500 minutes of history before; 1h:
	// only 48 hours of it, the rest was before the listing).
	anchor := time.Date(2019, 10, 13, 0, 0, 0, 0, time.UTC).UnixMilli()
	var trades []shard.Kline
	for s := range names {
		for i, iv := range ivs {
			for j := range int64(2) {
				k := shard.Kline{Symbol: uint32(s), Interval: uint8(i), Closed: true, OpenTime: anchor + j*iv.Millis,
					CloseTime: iv.CloseTime(anchor + j*iv.Millis), Open: 1, High: 2, Low: 1, Close: 2,
					Volume: shard.Uint128{Lo: 5}, Count: 1, FirstTradeID: 10 + j, LastTradeID: 10 + j, FirstAggID: 10 + j, LastAggID: 10 + j}
				if j == 0 {
					k.Flags = shard.FlagPartial
				}
				trades = append(trades, k)
				if err := w.Kline(&k); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}

	// Run 1, stopped once it stored a page and a half.
	run := startBackfillRun(t, srv, db, names, ivs, depth)
	deadline := time.Now().Add(time.Minute)
	for run.p.Stats().Klines < 1500 {
		if time.Now().After(deadline) {
			t.Fatalf("run 1 too slow: %+v", run.p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	run.stop()
	first := run.p.Stats()
	if first.TasksDone == first.Tasks {
		t.Fatalf("run 1 finished before it was stopped: %+v", first)
	}
	stored := map[string]store.Coverage{}
	cov, err := db.Coverage(context.Background(), "futures")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cov {
		stored[c.Symbol+" "+c.Interval] = c
	}

	// Run 2 finishes: it asks only for what run 1 did not store.
	run = startBackfillRun(t, srv, db, names, ivs, depth)
	run.finish(t, 2*time.Minute)
	// /metrics says the same as /readyz, in numbers.
	set := metrics.NewSet()
	backfillMetrics(set, run.p)
	var exposed bytes.Buffer
	set.WritePrometheus(&exposed)
	st := run.p.Stats()
	for name, v := range map[string]uint64{"klagg_backfill_series": st.Tasks, "klagg_backfill_series_done": st.TasksDone,
		"klagg_backfill_klines_done": uint64(st.PeriodsDone), "klagg_backfill_klines_fetched_total": st.Klines,
		"klagg_backfill_requests_total": st.Requests} {
		if line := fmt.Sprintf("%s %d\n", name, v); v == 0 || !strings.Contains(exposed.String(), line) {
			t.Errorf("/metrics lacks %q:\n%s", line, exposed.String())
		}
	}
	reqs := run.log.all()
	want := 0
	for _, iv := range ivs {
		for _, n := range names {
			c := stored[n+" "+iv.Name]
			from := anchor - depth*iv.Millis
			missing := (min(c.Oldest, anchor) - from) / iv.Millis
			switch iv.Name {
			case "1m": // the history covers it all: full pages, the last one short
				want += int((missing + 999) / 1000)
			case "1h": // the history ends within the first page: one more comes back empty
				if c.Oldest < anchor {
					want++
				} else {
					want += 2
				}
			}
		}
	}
	for _, r := range reqs {
		c := stored[r.symbol+" "+r.interval]
		if r.end >= c.Oldest && c.Oldest < anchor {
			t.Errorf("run 2 asked %+v again: run 1 stored %s %s from %d", r, r.symbol, r.interval, c.Oldest)
		}
	}
	if len(reqs) != want {
		t.Errorf("run 2 made %d klines requests, want %d (run 1 made %d)", len(reqs), want, first.Requests)
	}
	t.Logf("run 1: %+v; run 2: %+v", first, run.p.Stats())

	// The store: fakex's klines before the anchor, flagged REST; the trade rows
	// as they were written.
	client := exchange.NewClient(exchange.ClientConfig{Market: exchange.Futures, BaseURL: srv.RESTURL()})
	for s, n := range names {
		for i, iv := range ivs {
			from := anchor - depth*iv.Millis
			got, err := db.Klines(context.Background(), "futures", n, iv.Name, from, anchor+iv.Millis, store.MaxLimit)
			if err != nil {
				t.Fatal(err)
			}
			served := map[int64]shard.Kline{}
			// Overlapping windows: fakex starts each at its first trade, so an
			// empty kline is served only by a window opening before it.
			for start := from; start < anchor; start += 250 * iv.Millis {
				ks, err := client.Klines(context.Background(), n, iv.Name, start, min(start+1000*iv.Millis, anchor)-1, 1000)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range ks {
					var k shard.Kline
					if err := store.ParseRESTKline(&k, (*store.RESTKline)(&r), iv); err != nil {
						t.Fatal(err)
					}
					served[k.OpenTime] = k
				}
			}
			if len(got) < 2 {
				t.Fatalf("%s %s: %d klines stored", n, iv.Name, len(got))
			}
			rest, tail := got[:len(got)-2], got[len(got)-2:]
			for j, k := range tail {
				w := trades[(s*len(ivs)+i)*2+j]
				w.Symbol, w.Interval = 0, 0
				if k != w {
					t.Errorf("%s %s: trade-built row changed:\n got %+v\nwant %+v", n, iv.Name, k, w)
				}
			}
			for _, k := range rest {
				if k != served[k.OpenTime] {
					t.Fatalf("%s %s: stored %+v, fakex serves %+v", n, iv.Name, k, served[k.OpenTime])
				}
				delete(served, k.OpenTime)
			}
			// fakex starts a range at its first trade (Binance would serve the
			// empty periods before it), so a page can miss leading empty klines:
			// only those may be absent.
			for open, k := range served {
				if k.Count != 0 {
					t.Fatalf("%s %s: kline at %d with %d trades not stored", n, iv.Name, open, k.Count)
				}
			}
			if iv.Name == "1m" && len(rest) < depth*9/10 {
				t.Fatalf("%s 1m: %d klines stored of %d", n, len(rest), depth)
			}
		}
	}
}

func TestBackfillFlag(t *testing.T) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	n := registerBackfillFlag(fs)
	if err := fs.Parse(nil); err != nil || *n != 1000 {
		t.Fatalf("default --backfill = %d, %v", *n, err)
	}
	for _, c := range []struct {
		v  int
		ok bool
	}{{0, true}, {1000, true}, {-1, false}, {2_000_000, false}} {
		if err := checkBackfillFlag(c.v); (err == nil) != c.ok {
			t.Errorf("--backfill %d: %v", c.v, err)
		}
	}
	ivs, _ := shard.ParseIntervals("1m,1h")
	// --backfill 0: off, and ready at once.
	if p := startBackfill(context.Background(), nil, nil, "futures", ivs, 0, nil); p.Ready() != nil || p.Stats() != (feed.BackfillStats{}) {
		t.Fatalf("--backfill 0: ready %v, stats %+v", p.Ready(), p.Stats())
	}
	// The task a coverage gives: the depth before the first trade-built kline,
	// less the REST rows below it.
	for _, c := range []struct {
		cov      store.Coverage
		from, to int64
		ok       bool
	}{
		{store.Coverage{Oldest: 6_000_000, Rows: true, OldestTrades: 6_000_000, Trades: true}, 6_000_000 - 60*60_000, 6_000_000, true},
		{store.Coverage{Oldest: 5_400_000, Rows: true, OldestTrades: 6_000_000, Trades: true}, 6_000_000 - 60*60_000, 5_400_000, true},
		{store.Coverage{Oldest: 2_400_000, Rows: true, OldestTrades: 6_000_000, Trades: true}, 0, 0, false},
		// Not before 1970.
		{store.Coverage{Oldest: 1_200_000, Rows: true, OldestTrades: 1_200_000, Trades: true}, 0, 1_200_000, true},
	} {
		got, ok := backfillTask(c.cov, ivs[0], 60)
		if ok != c.ok || ok && (got.From != c.from || got.To != c.to) {
			t.Errorf("backfillTask(%+v) = %+v %v", c.cov, got, ok)
		}
	}
}

// TestBackfillCalendar backfills the calendar intervals, 3d, 1w and 1M (with
// 1d), before trade-built klines the test stores: every kline fakex serves
// before them is stored, on its grid, exactly as served.
func TestBackfillCalendar(t *testing.T) {
	names := []string{"AAAUSDT"}
	const depth = 4
	srv := replayServer(t, names)
	ivs, db, w := backfillStore(t, names, "1d,3d,1w,1M")
	// The first trade-built kline of each interval: the period after the
	// replay's last trade (2019-10-13 11:19 UTC).
	dataEnd := time.Date(2019, 10, 13, 12, 0, 0, 0, time.UTC).UnixMilli()
	anchors := make([]int64, len(ivs))
	for i, iv := range ivs {
		anchors[i] = iv.NextOpen(iv.OpenTime(dataEnd))
		k := shard.Kline{Interval: uint8(i), Closed: true, OpenTime: anchors[i], CloseTime: iv.CloseTime(anchors[i]),
			Open: 1, High: 1, Low: 1, Close: 1, Volume: shard.Uint128{Lo: 5}, Count: 1, Flags: shard.FlagPartial,
			FirstTradeID: 10, LastTradeID: 10, FirstAggID: 10, LastAggID: 10}
		if err := w.Kline(&k); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	run := startBackfillRun(t, srv, db, names, ivs, depth)
	run.finish(t, time.Minute)

	client := exchange.NewClient(exchange.ClientConfig{Market: exchange.Futures, BaseURL: srv.RESTURL()})
	for i, iv := range ivs {
		stored, err := db.Klines(context.Background(), "futures", names[0], iv.Name, 0, anchors[i]-1, store.MaxLimit)
		if err != nil {
			t.Fatal(err)
		}
		ks, err := client.Klines(context.Background(), names[0], iv.Name, 0, anchors[i]-1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(ks) == 0 || len(stored) != len(ks) {
			t.Fatalf("%s: %d klines stored, fakex serves %d", iv.Name, len(stored), len(ks))
		}
		traded := 0
		for j := range ks {
			var want shard.Kline
			if err := store.ParseRESTKline(&want, (*store.RESTKline)(&ks[j]), iv); err != nil {
				t.Fatalf("%s: %v", iv.Name, err)
			}
			got := stored[j]
			if got != want || iv.OpenTime(got.OpenTime) != got.OpenTime || got.CloseTime != iv.CloseTime(got.OpenTime) {
				t.Errorf("%s: stored %+v, fakex serves %+v", iv.Name, got, want)
			}
			if got.Count > 0 {
				traded++
			}
		}
		if traded == 0 {
			t.Errorf("%s: no stored kline has trades", iv.Name)
		}
		t.Logf("%s: %d klines stored from %s", iv.Name, len(stored), time.UnixMilli(stored[0].OpenTime).UTC().Format(time.DateOnly))
	}
}
