package pipeline

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// The live tests run the daemon (NewLive, pipeline.New with the exchange clock,
// Start, Run) against fakex on loopback and check zero loss against the truth:
// fakex's Produced ids and a plain replay of the same trades.
//
// go test -race -tags invariants -run 'Live' ./pipeline/

const liveIntervals = "1m,5m"

// liveTestConfig is DefaultLiveConfig pointed at srv with every timing short.
func liveTestConfig(srv *fakex.Server) LiveConfig {
	cfg := DefaultLiveConfig(exchange.Futures)
	cfg.Endpoints = exchange.Endpoints{WS: srv.WSURL(), REST: srv.RESTURL()}
	cfg.Poll = 10 * time.Millisecond
	cfg.Stale = time.Second
	cfg.TimeSync = 200 * time.Millisecond
	cfg.Refresh = 200 * time.Millisecond
	cfg.Overlap = 100 * time.Millisecond
	cfg.AckTimeout = 2 * time.Second
	cfg.Status = 0
	cfg.Backoff = exchange.Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}
	cfg.Client.MinBackoff = 10 * time.Millisecond
	cfg.Client.MaxBackoff = 200 * time.Millisecond
	cfg.Client.HTTP = &http.Client{Timeout: 5 * time.Second}
	return cfg
}

// livePipelineConfig is the pipeline of the live tests: small rings, open klines
// flushed at the end so that every trade shows in a compared kline.
func livePipelineConfig(t testing.TB) Config {
	cfg := testConfig(t, liveIntervals)
	cfg.Idle = 5 * time.Millisecond
	cfg.FlushOpen = true
	cfg.PinSources = false
	return cfg
}

// daemon is klagg run in a test: Live and a pipeline into a collector.
type daemon struct {
	t      testing.TB
	srv    *fakex.Server
	live   *Live
	p      *Pipeline
	col    *collector
	table  *parse.SymbolTable
	cancel context.CancelFunc
	done   chan error
	stats  *Stats
}

func startFakex(t testing.TB, cfg fakex.Config) *fakex.Server {
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

func startDaemon(t testing.TB, srv *fakex.Server, lcfg LiveConfig, pcfg Config) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{t: t, srv: srv, table: parse.NewSymbolTable(), cancel: cancel, done: make(chan error, 1)}
	t.Cleanup(d.cancel)
	log := zap.NewNop()
	if testing.Verbose() {
		log = zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	}
	live, err := NewLive(ctx, lcfg, d.table, log)
	if err != nil {
		t.Fatal(err)
	}
	d.live = live
	pcfg.Clock = live.Clock
	d.col = newCollector(d.table, pcfg.Shard.Intervals)
	d.p, err = New(pcfg, d.table, live.Sources(), d.col, log)
	if err != nil {
		t.Fatal(err)
	}
	live.Start(ctx, d.p)
	go func() { d.done <- d.p.Run(ctx) }()
	return d
}

// waitFor polls cond until it holds or within passes; then it fails with what().
func waitFor(t testing.TB, within time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v: %s", within, what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// produced sums the aggTrades fakex produced.
func produced(srv *fakex.Server) (total uint64) {
	for _, r := range srv.Produced() {
		total += uint64(r.Count)
	}
	return total
}

// waitRouted waits until the daemon has routed want trades.
func (d *daemon) waitRouted(want uint64, within time.Duration) {
	d.t.Helper()
	waitFor(d.t, within, func() bool { return d.p.Routed() >= want }, func() string {
		return "daemon routed " + strconv.FormatUint(d.p.Routed(), 10) + " of the " + strconv.FormatUint(want, 10) +
			" trades fakex produced; live " + statsString(d.live.Stats())
	})
}

// stop cancels the daemon and waits for the pipeline to flush.
func (d *daemon) stop() *Stats {
	d.t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Fatalf("pipeline: %v", err)
		}
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		d.t.Fatalf("pipeline did not stop within 10 s of its context ending; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
	if !d.col.closed {
		d.t.Fatal("sink was not closed")
	}
	d.live.Wait()
	d.stats = d.p.Stats()
	return d.stats
}

func statsString(s LiveStats) string {
	return "connects=" + strconv.FormatUint(s.Connects, 10) + " reconnects=" + strconv.FormatUint(s.Reconnects, 10) +
		" rotations=" + strconv.FormatUint(s.Rotations, 10) + " stale=" + strconv.FormatUint(s.StaleReplaced, 10) +
		" gaps=" + strconv.FormatUint(s.GapsOpened, 10) + "/" + strconv.FormatUint(s.GapsFilled, 10) +
		" unfillable=" + strconv.FormatUint(s.GapsUnfillable, 10) + " filled=" + strconv.FormatUint(s.TradesFilled, 10)
}

// checkZeroLoss checks that every aggTrade fakex produced reached the shards
// exactly once, in id order per symbol: the sources skip what they received
// twice.
func checkZeroLoss(t testing.TB, d *daemon) {
	t.Helper()
	want := produced(d.srv)
	st, ls := d.stats, d.live.Stats()
	if st.Shard.Trades != want || st.Sources.Trades != want || st.Shard.Duplicates != 0 || st.Shard.IDGaps != 0 || st.Shard.TooLate != 0 || ls.GapsUnfillable != 0 {
		t.Errorf("applied %d trades of %d produced (%d handed over, %d duplicates, %d id gaps, %d too late for a correction); live %s",
			st.Shard.Trades, want, st.Sources.Trades, st.Shard.Duplicates, st.Shard.IDGaps, st.Shard.TooLate, statsString(ls))
	}
}

// sameKlines checks that got holds exactly want's closed klines, field by field;
// a correction's flag aside, since got's last version is what counts.
func sameKlines(t testing.TB, want, got *collector) {
	t.Helper()
	norm := func(k shard.Kline) shard.Kline {
		k.Symbol = 0
		k.Flags &^= shard.FlagCorrected
		return k
	}
	var keys []klineKey
	for k := range want.klines {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	bad := 0
	for _, key := range keys {
		g, ok := got.klines[key]
		if !ok {
			t.Errorf("kline %v missing", key)
		} else if norm(g) != norm(want.klines[key]) {
			t.Errorf("kline %v differs:\n got  %+v\n want %+v", key, norm(g), norm(want.klines[key]))
		} else {
			continue
		}
		if bad++; bad == 10 {
			t.Fatal("too many differences")
		}
	}
	for key := range got.klines {
		if _, ok := want.klines[key]; !ok {
			t.Errorf("extra kline %v: %+v", key, got.klines[key])
		}
	}
}

const futuresRecording = "futures-ws-2021-07-22.ndjson"

// restRecord is one REST request a restProxy forwarded.
type restRecord struct {
	path   string
	at     time.Time // request received
	done   time.Time // response forwarded
	status int
}

// restProxy stands between the daemon and fakex's REST API and records every
// request with its timing.
type restProxy struct {
	http *httptest.Server
	mu   sync.Mutex
	log  []restRecord
}

func newRESTProxy(t testing.TB, srv *fakex.Server) *restProxy {
	t.Helper()
	target, err := url.Parse(srv.RESTURL())
	if err != nil {
		t.Fatal(err)
	}
	rp := &restProxy{}
	fwd := httputil.NewSingleHostReverseProxy(target)
	rp.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := restRecord{path: r.URL.Path, at: time.Now()}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		fwd.ServeHTTP(sw, r)
		rec.status, rec.done = sw.status, time.Now()
		rp.mu.Lock()
		rp.log = append(rp.log, rec)
		rp.mu.Unlock()
	}))
	t.Cleanup(rp.http.Close)
	return rp
}

// count returns the number of requests whose path ends with suffix.
func (rp *restProxy) count(suffix string) int {
	n := 0
	for _, r := range rp.records() {
		if strings.HasSuffix(r.path, suffix) {
			n++
		}
	}
	return n
}

func (rp *restProxy) records() []restRecord {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return slices.Clone(rp.log)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// TestLiveRecording runs the daemon against fakex replaying a real futures
// recording, with each fault alone and all together, and checks that its closed
// klines equal a plain replay of the same file and that no trade was lost.
func TestLiveRecording(t *testing.T) {
	path := dataFile(t, futuresRecording)
	rcfg := livePipelineConfig(t)
	rcfg.LearnSymbols = true
	want, _ := run(t, rcfg, parse.NewSymbolTable(), &Replay{Paths: []string{path}})
	if len(want.klines) == 0 {
		t.Fatal("the replay closed no klines")
	}
	// The daemon's two connections carry AKRO+KEEP (13 aggTrades) and CTK+SUSHI
	// (78): frame counts are chosen so that each fault fires on both or at least
	// on the busy one, and no withheld id is a symbol's last one (nothing later
	// on the stream would reveal it).
	//
	// Together, the first of drop, stall and shutdown to reach its count ends or
	// replaces a connection, and counts start again on the next one: the stall is
	// shorter than Stale there so that the connection lives on, and drop fires on
	// a connection that goes on being read during a rotation's overlap, or
	// shutdown does on one that is not dropped first.
	faults := []struct {
		spec  string
		fired []string // fault kinds fakex must have injected; "a|b": one of them
	}{
		{"", nil},
		{"drop=10", []string{"drop"}},
		// Silent from the first frame on: the symbols that had not traded yet
		// are recovered from REST by the time since they are followed.
		{"stall=10s@1", []string{"stall"}},
		{"malformed=4", []string{"malformed"}},
		{"withhold=2@1", []string{"withhold"}},
		{"dup=3", []string{"dup"}},
		{"ratelimit=3", []string{"ratelimit"}},
		{"shutdown=9", []string{"shutdown"}},
		{"ignorepings", nil},
		{"stall=600ms@4,shutdown=7,drop=9,malformed=4,withhold=2@1,dup=3,ratelimit=5,ignorepings",
			[]string{"stall", "drop|shutdown", "malformed", "withhold", "dup", "ratelimit"}},
	}
	for _, fc := range faults {
		t.Run("faults="+fc.spec, func(t *testing.T) {
			f, err := fakex.ParseFaults(fc.spec)
			if err != nil {
				t.Fatal(err)
			}
			fcfg := fakex.DefaultConfig()
			fcfg.Replay = []string{path}
			fcfg.Speed = 30
			fcfg.WaitConns = 2 // the daemon's two slots share the four symbols
			fcfg.Faults = f
			fcfg.ShutdownGrace = 300 * time.Millisecond
			// Pings often enough to be answered many times; not so often that the
			// pongs pass Binance's 10 messages a second.
			fcfg.PingEvery, fcfg.PongTimeout = 300*time.Millisecond, 2*time.Second
			srv := startFakex(t, fcfg)
			lcfg := liveTestConfig(srv)
			lcfg.Conns = 2
			d := startDaemon(t, srv, lcfg, livePipelineConfig(t))
			select {
			case <-srv.Done():
			case <-time.After(30 * time.Second):
				t.Fatal("fakex did not finish its replay within 30 s")
			}
			d.waitRouted(produced(srv), 20*time.Second)
			d.stop()
			checkZeroLoss(t, d)
			sameKlines(t, want, d.col)
			fs := srv.Stats()
			for _, kinds := range fc.fired {
				fired := false
				for kind := range strings.SplitSeq(kinds, "|") {
					fired = fired || fs.Faults[kind] > 0
				}
				if !fired {
					t.Errorf("fault %s never fired: %v", kinds, fs.Faults)
				}
			}
			if fs.PongTimeouts != 0 {
				t.Errorf("%d connections closed by fakex for unanswered pings", fs.PongTimeouts)
			}
			t.Logf("%d klines equal; live %s; faults %v", len(want.klines), statsString(d.live.Stats()), fs.Faults)
		})
	}
}

// truthKlines replays through a plain pipeline every aggTrade fakex produced,
// read back from its history in trade-time order: the klines of a daemon that
// lost nothing.
func truthKlines(t testing.TB, srv *fakex.Server, cfg Config) *collector {
	t.Helper()
	type rec struct {
		name string
		t    fakex.AggTrade
	}
	var all []rec
	for name, r := range srv.Produced() {
		n := 0
		for from := r.First; ; {
			page := srv.Trades(name, from, 1000)
			for _, tr := range page {
				all = append(all, rec{name, tr})
			}
			n += len(page)
			if len(page) < 1000 {
				break
			}
			from = page[len(page)-1].AggID + 1
		}
		if int64(n) != r.Count {
			t.Fatalf("%s: fakex retains %d of the %d trades it produced", name, n, r.Count)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.t.TradeTime != b.t.TradeTime {
			return a.t.TradeTime < b.t.TradeTime
		}
		if a.name != b.name {
			return a.name < b.name
		}
		return a.t.AggID < b.t.AggID
	})
	frames := make([][]byte, len(all))
	for i, r := range all {
		frames[i] = fmt.Appendf(nil, `{"e":"aggTrade","E":%d,"a":%d,"s":"%s","p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%t}`,
			r.t.TradeTime, r.t.AggID, r.name, r.t.Price, r.t.Qty, r.t.FirstID, r.t.LastID, r.t.TradeTime, r.t.BuyerMaker)
	}
	cfg.LearnSymbols = true
	want, st := run(t, cfg, parse.NewSymbolTable(), &Frames{Frames: frames})
	if st.Shard.Trades != uint64(len(all)) || st.Errors() != 0 {
		t.Fatalf("reference replay applied %d of %d trades, %d errors", st.Shard.Trades, len(all), st.Errors())
	}
	return want
}

// syntheticIntervals are short enough for a few seconds of synthetic feed to
// close klines by the exchange clock while running.
const syntheticIntervals = "1s,1m"

func syntheticPipelineConfig(t testing.TB) Config {
	cfg := livePipelineConfig(t)
	ivs, err := shard.ParseIntervals(syntheticIntervals)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shard.Intervals = ivs
	return cfg
}

// syntheticFakex is a paced synthetic futures feed: its data clock follows the
// wall clock, like Binance's.
func syntheticFakex(t testing.TB, symbols int, rate float64, spec string) *fakex.Server {
	t.Helper()
	f, err := fakex.ParseFaults(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fakex.DefaultConfig()
	cfg.Symbols, cfg.Rate, cfg.Faults = symbols, rate, f
	cfg.WaitConns = 2 // the daemon's two slots share the symbols listed at start
	cfg.ShutdownGrace = 300 * time.Millisecond
	return startFakex(t, cfg)
}

// feedUntil lets the feed run until cond holds (bounded), then stops fakex and
// waits until the daemon routed every trade produced, and stops the daemon.
func (d *daemon) feedUntil(within time.Duration, cond func() bool, what string) {
	d.t.Helper()
	waitFor(d.t, within, cond, func() string {
		return what + "; live " + statsString(d.live.Stats()) + fmt.Sprintf("; fakex faults %v", d.srv.Stats().Faults)
	})
	d.srv.Stop()
	d.waitRouted(produced(d.srv), 30*time.Second)
	d.stop()
}

// lastKline returns the open time of the newest kline of symbol in interval
// (math.MinInt64 if none), and whether it has trades.
func lastKline(c *collector, symbol, interval string) (open int64, traded bool) {
	open = math.MinInt64
	for k, v := range c.klines {
		if k.symbol == symbol && k.interval == interval && k.openTime > open {
			open, traded = k.openTime, v.Flags&shard.FlagEmpty == 0
		}
	}
	return open, traded
}

// TestLiveSynthetic runs the daemon against fakex's synthetic feed with every
// fault at once, for a few seeds (one of them random, logged), and checks zero
// loss and klines equal to a replay of everything fakex produced.
func TestLiveSynthetic(t *testing.T) {
	seeds := []int64{1, 2, time.Now().UnixNano() % 1000}
	for _, seed := range seeds {
		// Per connection, the stall (shorter than Stale) comes first, then
		// serverShutdown, and the drop while the daemon still reads the old
		// connection during the rotation's overlap.
		spec := "stall=600ms@700,shutdown=1100,drop=1130,malformed=97,withhold=5@40,dup=31,ratelimit=7,ignorepings,seed=" + strconv.FormatInt(seed, 10)
		t.Run("seed="+strconv.FormatInt(seed, 10), func(t *testing.T) {
			srv := syntheticFakex(t, 6, 2000, spec)
			lcfg := liveTestConfig(srv)
			lcfg.Conns = 2
			d := startDaemon(t, srv, lcfg, syntheticPipelineConfig(t))
			d.feedUntil(20*time.Second, func() bool {
				f := srv.Stats().Faults
				return f["drop"] >= 1 && f["shutdown"] >= 2 && f["stall"] >= 1 && f["withhold"] >= 3
			}, "the faults did not all fire")
			checkZeroLoss(t, d)
			sameKlines(t, truthKlines(t, srv, syntheticPipelineConfig(t)), d.col)
			t.Logf("spec %s: %d klines; live %s; faults %v", spec, len(d.col.klines), statsString(d.live.Stats()), srv.Stats().Faults)
		})
	}
}

// TestLiveListing lists a symbol and delists another while the daemon runs,
// with connections dropped after the listing: the listed symbol's klines start
// at its first trade and follow it across reconnects (it is resubscribed), the
// delisted one's klines stop after its last trade, and nothing is lost.
func TestLiveListing(t *testing.T) {
	const listed, delisted = "S0004USDT", "S0001USDT"
	srv := syntheticFakex(t, 5, 1000, "list="+listed+"@300,delist="+delisted+"@1200,drop=1500")
	lcfg := liveTestConfig(srv)
	lcfg.Conns = 2
	d := startDaemon(t, srv, lcfg, syntheticPipelineConfig(t))
	d.feedUntil(20*time.Second, func() bool {
		ls := d.live.Stats()
		if ls.Listed != 1 || ls.Delisted != 1 || ls.Reconnects < 2 || srv.Produced()[listed].Count < 500 {
			return false
		}
		// Long enough after the delisting for empty klines to have closed.
		last := srv.Trades(delisted, srv.Produced()[delisted].Last, 1)
		return len(last) == 1 && srv.Clock() > last[0].TradeTime+4000
	}, "no listing, delisting and two reconnects")
	checkZeroLoss(t, d)

	want := truthKlines(t, srv, syntheticPipelineConfig(t))
	prod := srv.Produced()
	first := math.MaxInt64
	for k, v := range d.col.klines {
		if k.symbol == listed && k.interval == "1s" && v.Flags&shard.FlagEmpty == 0 && int(v.FirstAggID) < first {
			first = int(v.FirstAggID)
		}
	}
	if int64(first) != prod[listed].First {
		t.Errorf("listed %s: first kline starts at aggTrade %d, its first trade is %d", listed, first, prod[listed].First)
	}
	// The delisted symbol: the reference goes on with empty klines to the end;
	// the daemon must stop at the kline of its last trade.
	for _, iv := range []string{"1s", "1m"} {
		wantLast, _ := lastKline(want, delisted, iv)
		gotLast, traded := lastKline(d.col, delisted, iv)
		var lastTraded int64 = math.MinInt64
		for k, v := range want.klines {
			if k.symbol == delisted && k.interval == iv && v.Flags&shard.FlagEmpty == 0 {
				lastTraded = max(lastTraded, k.openTime)
			}
		}
		if gotLast != lastTraded || !traded {
			t.Errorf("delisted %s %s: last kline opens at %d (traded %v), its last trade's kline at %d", delisted, iv, gotLast, traded, lastTraded)
		}
		for k := range want.klines {
			if k.symbol == delisted && k.interval == iv && k.openTime > lastTraded {
				delete(want.klines, k)
			}
		}
		t.Logf("delisted %s %s: klines end at %d; a daemon that kept it would have gone on to %d", delisted, iv, gotLast, wantLast)
	}
	sameKlines(t, want, d.col)
	t.Logf("live %s; faults %v", statsString(d.live.Stats()), srv.Stats().Faults)
}

// TestLiveRotation rotates every connection many times: the successor is
// subscribed before the old one is let go, so nothing is lost, nothing is
// reconnected and REST is not asked (no probes: the old connection is read
// until the new one carries everything). Two of the four slots have no symbol:
// klines still close by the exchange clock while running.
func TestLiveRotation(t *testing.T) {
	f := fakex.DefaultConfig()
	f.Symbols, f.Rate, f.WaitConns = 2, 2000, 2
	srv := startFakex(t, f)
	proxy := newRESTProxy(t, srv)
	lcfg := liveTestConfig(srv)
	lcfg.Endpoints.REST = proxy.http.URL
	lcfg.Conns = 4
	lcfg.Rotate = 300 * time.Millisecond
	d := startDaemon(t, srv, lcfg, syntheticPipelineConfig(t))
	d.feedUntil(20*time.Second, func() bool {
		return d.live.Stats().Rotations >= 6 && d.p.current() > srv.Clock()-5000
	}, "fewer than 6 rotations, or the watermark does not follow the exchange clock")
	checkZeroLoss(t, d)
	sameKlines(t, truthKlines(t, srv, syntheticPipelineConfig(t)), d.col)
	ls := d.live.Stats()
	if ls.Reconnects != 0 {
		t.Errorf("%d reconnects; rotations must not need any", ls.Reconnects)
	}
	// A trade lost between two connections opens a gap, filled from REST; no
	// other request for trades is needed.
	if n := proxy.count("/aggTrades"); uint64(n) > 2*ls.GapsOpened {
		t.Errorf("%d aggTrades requests for %d gaps", n, ls.GapsOpened)
	}
	t.Logf("live %s; %d duplicates from overlaps", statsString(ls), ls.Duplicates)
}

// TestLiveStale stalls connections for longer than Stale: the daemon sees that
// their symbols trade meanwhile (REST), replaces them and loses nothing.
func TestLiveStale(t *testing.T) {
	srv := syntheticFakex(t, 4, 1000, "stall=5s@400")
	lcfg := liveTestConfig(srv)
	lcfg.Conns = 2
	d := startDaemon(t, srv, lcfg, syntheticPipelineConfig(t))
	d.feedUntil(20*time.Second, func() bool { return d.live.Stats().StaleReplaced >= 2 }, "no two stale connections replaced")
	checkZeroLoss(t, d)
	sameKlines(t, truthKlines(t, srv, syntheticPipelineConfig(t)), d.col)
	t.Logf("live %s; faults %v", statsString(d.live.Stats()), srv.Stats().Faults)
}

// TestLiveRateLimit makes fakex answer every 8th REST request with 429 and
// Retry-After: 1 while the daemon has a burst of requests to make (20 symbols to
// probe after a reconnect): after each 429, no request may leave the daemon for
// a second except those already under way, one per goroutine that asks REST (a
// client that did not wait would send the rest of the burst); and nothing is
// lost.
func TestLiveRateLimit(t *testing.T) {
	const symbols = 20
	f, err := fakex.ParseFaults("ratelimit=8,drop=800")
	if err != nil {
		t.Fatal(err)
	}
	fcfg := fakex.DefaultConfig()
	fcfg.Symbols, fcfg.Rate, fcfg.Faults, fcfg.WaitConns = symbols, 1500, f, 1
	srv := startFakex(t, fcfg)
	proxy := newRESTProxy(t, srv)
	lcfg := liveTestConfig(srv)
	lcfg.Endpoints.REST = proxy.http.URL
	lcfg.Conns = 1
	lcfg.FillWorkers = 1
	lcfg.Refresh, lcfg.TimeSync = 5*time.Second, 5*time.Second // the burst is the probes'
	d := startDaemon(t, srv, lcfg, syntheticPipelineConfig(t))
	// Every symbol is probed after the reconnect: from its last trade, or since
	// it is followed if it sent none.
	waitFor(t, 20*time.Second, func() bool { return srv.Stats().Faults["drop"] >= 1 }, func() string { return "no drop" })
	srv.Stop()
	waitFor(t, 20*time.Second, func() bool { return proxy.count("/aggTrades") >= symbols }, func() string {
		return fmt.Sprintf("%d aggTrades requests for %d symbols; live %s", proxy.count("/aggTrades"), symbols, statsString(d.live.Stats()))
	})
	d.waitRouted(produced(srv), 30*time.Second)
	d.stop()
	checkZeroLoss(t, d)

	// Who may have a request under way when a 429 arrives: the fillers, the
	// manager (universe, clock) and each slot's stale check.
	concurrent := lcfg.FillWorkers + 1 + len(d.live.slots)
	recs := proxy.records()
	throttled, worst := 0, 0
	for _, r := range recs {
		if r.status != http.StatusTooManyRequests {
			continue
		}
		throttled++
		n := 0
		for _, q := range recs {
			if q.at.After(r.done) && q.at.Before(r.done.Add(time.Second)) {
				n++
			}
		}
		worst = max(worst, n)
	}
	fs := srv.Stats()
	var seen, seen429 int64
	for k, n := range fs.REST {
		seen += n
		if k.Status == http.StatusTooManyRequests {
			seen429 += n
		}
	}
	if throttled == 0 || int64(throttled) != seen429 || int64(len(recs)) != seen {
		t.Errorf("proxy forwarded %d requests, %d answered 429; fakex counts %d and %d", len(recs), throttled, seen, seen429)
	}
	if worst > concurrent {
		t.Errorf("up to %d requests within a second after a 429 with Retry-After: 1; at most %d may be under way", worst, concurrent)
	}
	t.Logf("%d REST requests, %d answered 429, at most %d within a second after one (bound %d); fakex %v; live %s",
		len(recs), throttled, worst, concurrent, fs.REST, statsString(d.live.Stats()))
}

// TestNewLiveUnreachable starts the daemon where no exchange answers: NewLive
// keeps trying with backoff until its context ends and then says what it tried
// and what failed.
func TestNewLiveUnreachable(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		// Binance's backoffs: from 500 ms, the first retries come within a second.
		cfg := DefaultLiveConfig(exchange.Futures)
		cfg.Endpoints = exchange.Endpoints{WS: "ws://" + addr, REST: "http://" + addr}
		core, logs := observer.New(zap.WarnLevel)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = NewLive(ctx, cfg, parse.NewSymbolTable(), zap.New(core))
		if err == nil || !strings.Contains(err.Error(), "http://"+addr) || !strings.Contains(err.Error(), "symbol universe") {
			t.Fatalf("NewLive = %v, want an error naming the symbol universe and %s", err, "http://"+addr)
		}
		if ctx.Err() == nil {
			t.Errorf("NewLive gave up before its context ended: %v", err)
		}
		retries := logs.FilterMessage("cannot read the symbol universe; retrying").All()
		if len(retries) < 2 || !strings.Contains(fmt.Sprint(retries[0].ContextMap()), "connection refused") ||
			!strings.Contains(err.Error(), "connection refused") {
			t.Errorf("no retry logged with the cause: %v", logs.All())
		}
		t.Logf("error: %v; %d retries logged", err, len(retries))
	})
	t.Run("500", func(t *testing.T) {
		var attempts atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			attempts.Add(1)
			http.Error(w, "down for maintenance", http.StatusInternalServerError)
		}))
		defer srv.Close()
		cfg := DefaultLiveConfig(exchange.Futures)
		cfg.Endpoints.REST = srv.URL
		cfg.Backoff = exchange.Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}
		cfg.Client.MinBackoff, cfg.Client.MaxBackoff = 10*time.Millisecond, 200*time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := NewLive(ctx, cfg, parse.NewSymbolTable(), nil)
		if err == nil || !strings.Contains(err.Error(), srv.URL) {
			t.Fatalf("NewLive = %v, want an error naming %s", err, srv.URL)
		}
		// Even with backoffs from 10 ms, a second holds a few dozen attempts.
		if n := attempts.Load(); n < 2 || n > 100 {
			t.Errorf("%d attempts in a second; want more than one, and backoff, not a spin", n)
		}
		t.Logf("%d attempts in a second: %v", attempts.Load(), err)
	})
	t.Run("websocket", func(t *testing.T) {
		// REST answers, the WebSocket address accepts and hangs up at once.
		fx := syntheticFakex(t, 2, 100, "")
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var accepts atomic.Int64
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepts.Add(1)
				c.Close()
			}
		}()
		lcfg := liveTestConfig(fx)
		lcfg.Endpoints.WS = "ws://" + ln.Addr().String()
		lcfg.Conns = 1
		core, logs := observer.New(zap.WarnLevel)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		table := parse.NewSymbolTable()
		live, err := NewLive(ctx, lcfg, table, zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		pcfg := livePipelineConfig(t)
		pcfg.Clock = live.Clock
		p, err := New(pcfg, table, live.Sources(), newCollector(table, pcfg.Shard.Intervals), nil)
		if err != nil {
			t.Fatal(err)
		}
		live.Start(ctx, p)
		if err := p.Run(ctx); err != nil {
			t.Fatal(err)
		}
		ls := live.Stats()
		if n := accepts.Load(); n < 2 || n > 50 || ls.ConnectFailures != uint64(n) || ls.Connects != 0 {
			t.Errorf("%d connection attempts in a second, %d failures counted, %d connects; want more than one, and backoff", n, ls.ConnectFailures, ls.Connects)
		}
		fails := logs.FilterMessage("cannot connect; retrying").All()
		if len(fails) == 0 || !strings.Contains(fmt.Sprint(fails[0].ContextMap()), lcfg.Endpoints.WS) {
			t.Errorf("no connection failure logged with the address: %v", logs.All())
		}
		t.Logf("%d attempts; first failure logged: %v", accepts.Load(), fails[0].ContextMap())
	})
}
