package feed

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
)

// The live tests run the daemon (New, pipeline.New with the exchange clock,
// Start, Run) against fakex on loopback and check zero loss against the truth:
// fakex's Produced ids and a plain replay of every trade it produced.
//
// go test -race -tags invariants ./feed/

// dataFile returns the path of a shared real data file, or skips the test when
// ../shared/data/binance is absent.
func dataFile(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join("..", "..", "shared", "data", "binance", name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("real Binance data not available (%v): this test needs ../shared/data/binance next to the project", err)
	}
	return path
}

// klineKey names one kline.
type klineKey struct {
	symbol   string
	interval string
	openTime int64
}

func (k klineKey) String() string { return fmt.Sprintf("%s %s %d", k.symbol, k.interval, k.openTime) }

// collector is a Sink that keeps the final state of every closed kline (a
// correction replaces it, a mark adds its flags). stall, when set, is called
// before each event (a slow sink).
type collector struct {
	mu        sync.Mutex
	symbols   *parse.SymbolTable
	intervals []shard.Interval
	klines    map[klineKey]shard.Kline
	marks     int
	updates   int
	closed    bool
	stall     func()
}

func newCollector(symbols *parse.SymbolTable, intervals []shard.Interval) *collector {
	return &collector{symbols: symbols, intervals: intervals, klines: map[klineKey]shard.Kline{}}
}

func (c *collector) Kline(k *shard.Kline) error {
	if c.stall != nil {
		c.stall()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !k.Closed {
		c.updates++
		return nil
	}
	key := klineKey{c.symbols.Load().Name(k.Symbol), c.intervals[k.Interval].Name, k.OpenTime}
	if k.Mark {
		c.marks++
		if old, ok := c.klines[key]; ok {
			old.Flags |= k.Flags
			c.klines[key] = old
		}
		return nil
	}
	c.klines[key] = *k
	return nil
}

func (c *collector) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *collector) snapshot() map[klineKey]shard.Kline {
	c.mu.Lock()
	defer c.mu.Unlock()
	return copyKlines(c.klines)
}

func copyKlines(m map[klineKey]shard.Kline) map[klineKey]shard.Kline {
	out := make(map[klineKey]shard.Kline, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// pipelineConfig is the pipeline of the live tests: small rings (wrap-around and
// backpressure happen), the given intervals, a correction history longer than
// any hold of the tests.
func pipelineConfig(t testing.TB, intervals string) pipeline.Config {
	t.Helper()
	cfg := pipeline.DefaultConfig()
	ivs, err := shard.ParseIntervals(intervals)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shard.Intervals = ivs
	cfg.Shard.Lateness = time.Minute.Milliseconds()
	cfg.Ring.Size = 64
	cfg.Batch = 16
	cfg.Idle = 5 * time.Millisecond
	return cfg
}

// testConfig is DefaultConfig pointed at srv with every timing short.
func testConfig(srv *fakex.Server) Config {
	cfg := DefaultConfig(exchange.Futures)
	cfg.Endpoints = exchange.Endpoints{WS: srv.WSURL(), REST: srv.RESTURL()}
	cfg.Poll = 10 * time.Millisecond
	cfg.Stale = time.Second
	cfg.TimeSync = 200 * time.Millisecond
	cfg.Refresh = 200 * time.Millisecond
	cfg.Verify = 2 * time.Second
	cfg.TickerLag = 100 * time.Millisecond
	cfg.SuspectDelay = 500 * time.Millisecond
	cfg.PingEvery, cfg.PongTimeout = 300*time.Millisecond, time.Second
	cfg.Overlap = 100 * time.Millisecond
	cfg.AckTimeout = 2 * time.Second
	cfg.BogusAfter = time.Second
	cfg.MaxHold = 30 * time.Second
	cfg.Status = 0
	cfg.Backoff = exchange.Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}
	cfg.Client.MinBackoff = 10 * time.Millisecond
	cfg.Client.MaxBackoff = 200 * time.Millisecond
	cfg.Client.HTTP = &http.Client{Timeout: 5 * time.Second}
	return cfg
}

// daemon is klagg run in a test: a Session and a pipeline into a collector.
type daemon struct {
	t      testing.TB
	srv    *fakex.Server
	sess   *Session
	p      *pipeline.Pipeline
	col    *collector
	table  *parse.SymbolTable
	cancel context.CancelFunc
	done   chan error
	stats  *pipeline.Stats
	grace  int64
	// stopClock is the exchange time when the daemon was stopped; feedStopClock
	// when fakex's feed was.
	stopClock, feedStopClock int64
	// routeFor bounds the wait for the last trades to be handed over (feedUntil).
	routeFor time.Duration
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

func startDaemon(t testing.TB, srv *fakex.Server, cfg Config, pcfg pipeline.Config) *daemon {
	t.Helper()
	return startDaemonWith(t, srv, cfg, pcfg, nil)
}

func startDaemonWith(t testing.TB, srv *fakex.Server, cfg Config, pcfg pipeline.Config, stall func()) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{t: t, srv: srv, table: parse.NewSymbolTable(), cancel: cancel, done: make(chan error, 1), grace: pcfg.Shard.Grace}
	t.Cleanup(d.cancel)
	log := zap.NewNop()
	if testing.Verbose() {
		log = zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	}
	sess, err := New(ctx, cfg, d.table, log)
	if err != nil {
		t.Fatal(err)
	}
	d.sess = sess
	pcfg.Clock = sess.Clock
	d.col = newCollector(d.table, pcfg.Shard.Intervals)
	d.col.stall = stall
	d.p, err = pipeline.New(pcfg, d.table, sess.Sources(), d.col, log)
	if err != nil {
		t.Fatal(err)
	}
	sess.Start(ctx, d.p)
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

// waitRouted waits until the daemon has handed over want trades.
func (d *daemon) waitRouted(want uint64, within time.Duration) {
	d.t.Helper()
	waitFor(d.t, within, func() bool { return d.p.Routed() >= want }, func() string {
		return fmt.Sprintf("daemon routed %d of the %d trades fakex produced; live %s%s", d.p.Routed(), want, statsString(d.sess.Stats()), d.dump())
	})
}

// stop cancels the daemon and waits for the pipeline to drain.
func (d *daemon) stop() *pipeline.Stats {
	d.t.Helper()
	d.stopClock = d.sess.Clock()
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
	d.sess.Wait()
	d.stats = d.p.Stats()
	return d.stats
}

func statsString(s Stats) string {
	return fmt.Sprintf("connects=%d reconnects=%d rotations=%d stale=%d pingtimeouts=%d gaps=%d/%d unfillable=%d lost=%d filled=%d dup=%d bogus=%d held=%d trailing=%d verified=%d/%d holdsExpired=%d requests=%d tickers=%d unwanted=%d lastwordREST=%d",
		s.Connects, s.Reconnects, s.Rotations, s.StaleReplaced, s.PingTimeouts, s.GapsOpened, s.GapsClosed, s.GapsUnfillable,
		s.TradesLost, s.Filled, s.Duplicates, s.Bogus, s.Held+s.HeldAtExit, s.TrailingGaps, s.VerifiedByStream, s.VerifiedByTicker,
		s.HoldsExpired, s.Requests, s.TickerReads, s.Unwanted, s.LastWordREST)
}

// checkZeroLoss checks that every aggTrade fakex produced reached the shards
// exactly once and was applied, and that every trade received is accounted for.
func checkZeroLoss(t testing.TB, d *daemon) {
	t.Helper()
	want := produced(d.srv)
	st, ls := d.stats, d.sess.Stats()
	if st.Shard.Trades != want || st.Sources.Trades != want || st.Shard.Duplicates != 0 || st.Shard.TooLate != 0 || ls.GapsUnfillable != 0 || ls.Bogus != 0 {
		t.Errorf("applied %d trades of %d produced (%d handed over, %d duplicates, %d too late); live %s",
			st.Shard.Trades, want, st.Sources.Trades, st.Shard.Duplicates, st.Shard.TooLate, statsString(ls))
	}
	if !ls.Accounted() {
		t.Errorf("trades received are not all accounted for: %+v", ls)
	}
}

// closedBy is the close time before which every kline must have closed when the
// daemon stopped: the clock then, less the grace and a margin.
func (d *daemon) closedBy() int64 { return d.stopClock - d.grace - 1000 }

// compare checks the daemon's closed klines against want (the klines of a
// fault-free replay of the same trades): every kline the daemon closed equals
// want's, or carries a flag saying why not; every kline of want that closed
// before the daemon's last closed kline of its series, or before closedBy,
// exists. The partial flag of the first klines after a start is expected, and
// correction flags do not count. It returns the number of flagged differences.
func compare(t testing.TB, want map[klineKey]shard.Kline, got map[klineKey]shard.Kline, closedBy int64) (flagged int) {
	t.Helper()
	norm := func(k shard.Kline) shard.Kline {
		k.Symbol = 0
		k.Flags &^= shard.FlagCorrected | shard.FlagPartial
		return k
	}
	newest := map[[2]string]int64{}
	for k := range got {
		s := [2]string{k.symbol, k.interval}
		if o, ok := newest[s]; !ok || k.openTime > o {
			newest[s] = k.openTime
		}
	}
	var keys []klineKey
	for k := range want {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	bad := 0
	for _, key := range keys {
		g, ok := got[key]
		switch {
		case !ok:
			n, seen := newest[[2]string{key.symbol, key.interval}]
			if (!seen || key.openTime > n) && want[key].CloseTime >= closedBy {
				continue // not closed yet when the daemon stopped
			}
			t.Errorf("kline %v missing", key)
		case norm(g) == norm(want[key]):
			continue
		case g.Flags&(shard.QualityFlags&^shard.FlagPartial) != 0:
			flagged++
			continue
		default:
			t.Errorf("kline %v differs, unflagged:\n got  %+v\n want %+v", key, g, want[key])
		}
		if bad++; bad == 10 {
			t.Fatal("too many differences")
		}
	}
	// The daemon goes on with empty klines after the last trade, while the
	// clock runs; the replay stops at the last trade.
	lastWant := map[[2]string]shard.Kline{}
	for key, k := range want {
		s := [2]string{key.symbol, key.interval}
		if o, ok := lastWant[s]; !ok || k.OpenTime > o.OpenTime {
			lastWant[s] = k
		}
	}
	for key, k := range got {
		if _, ok := want[key]; ok {
			continue
		}
		if l, ok := lastWant[[2]string{key.symbol, key.interval}]; ok && k.OpenTime > l.OpenTime &&
			k.Flags&shard.FlagEmpty != 0 && k.Close == l.Close {
			continue
		}
		t.Errorf("extra kline %v: %+v", key, k)
	}
	return flagged
}

// truth replays through a plain pipeline every aggTrade fakex produced, read
// back from its history in trade-time order: the klines of a daemon that lost
// nothing.
func truth(t testing.TB, srv *fakex.Server, intervals string) map[klineKey]shard.Kline {
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
	return replay(t, intervals, &pipeline.Frames{Frames: frames}, uint64(len(all)))
}

// replay runs src through a plain pipeline and returns its closed klines.
func replay(t testing.TB, intervals string, src pipeline.Source, wantTrades uint64) map[klineKey]shard.Kline {
	t.Helper()
	cfg := pipelineConfig(t, intervals)
	cfg.LearnSymbols = true
	cfg.FlushOpen = true
	table := parse.NewSymbolTable()
	c := newCollector(table, cfg.Shard.Intervals)
	p, err := pipeline.New(cfg, table, []pipeline.Source{src}, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); wantTrades > 0 && (st.Shard.Trades != wantTrades || st.Errors() != 0) {
		t.Fatalf("reference replay applied %d of %d trades, %d errors", st.Shard.Trades, wantTrades, st.Errors())
	}
	return c.klines
}

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

// syntheticFakex is a paced synthetic futures feed: its data clock follows the
// wall clock, like Binance's.
func syntheticFakex(t testing.TB, symbols int, rate float64, spec string, waitConns int) *fakex.Server {
	t.Helper()
	f, err := fakex.ParseFaults(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fakex.DefaultConfig()
	cfg.Symbols, cfg.Rate, cfg.Faults = symbols, rate, f
	cfg.WaitConns = waitConns
	cfg.ShutdownGrace = 300 * time.Millisecond
	cfg.PingEvery, cfg.PongTimeout = 300*time.Millisecond, 2*time.Second
	return startFakex(t, cfg)
}

// feedUntil lets the feed run until cond holds (bounded), then stops fakex,
// waits until the daemon handed over every trade produced and its klines closed
// past the last trade, and stops the daemon.
func (d *daemon) feedUntil(within time.Duration, cond func() bool, what string) {
	d.t.Helper()
	waitFor(d.t, within, cond, func() string {
		return what + "; live " + statsString(d.sess.Stats()) + fmt.Sprintf("; fakex faults %v", d.srv.Stats().Faults)
	})
	d.feedStopClock = d.sess.Clock()
	d.srv.Stop()
	d.waitRouted(produced(d.srv), cmp.Or(d.routeFor, 60*time.Second))
	// Symbols verified again after the last reconnect (a ticker read), then the
	// klines of the last trades closed by the clock.
	waitFor(d.t, 20*time.Second, func() bool { return d.sess.Stats().Holding == 0 }, func() string {
		return "symbols still held: " + statsString(d.sess.Stats()) + d.dump()
	})
	time.Sleep(time.Duration(d.grace)*time.Millisecond + 1500*time.Millisecond)
	d.stop()
}

// lastKline returns the open time of the newest kline of symbol in interval
// (math.MinInt64 if none), and whether it has trades.
func lastKline(c map[klineKey]shard.Kline, symbol, interval string) (open int64, traded bool) {
	open = math.MinInt64
	for k, v := range c {
		if k.symbol == symbol && k.interval == interval && k.openTime > open {
			open, traded = k.openTime, v.Flags&shard.FlagEmpty == 0
		}
	}
	return open, traded
}

// dump describes every sequence that is not live, for a failure message. It
// reads the slots' state from another goroutine: call it only when failing.
func (d *daemon) dump() string {
	var b strings.Builder
	d.sess.mu.Lock()
	slots := slices.Clone(d.sess.slots)
	d.sess.mu.Unlock()
	for _, sl := range slots {
		fmt.Fprintf(&b, "\nslot %d connected=%v subscribed=%d", sl.id, sl.connected.Load(), len(sl.subscribed))
		for _, q := range sl.active {
			if q.state == stateLive {
				continue
			}
			fmt.Fprintf(&b, "\n  %s %v last=%d gap=[%d,%d] toTrade=%d held=%d pending=%v tries=%d errs=%d probing=%v retryIn=%v hold=%d",
				q.name, q.state, q.last, q.gap.from, q.gap.to, q.gap.toTrade, len(q.gap.held), q.gap.pending, q.gap.tries, q.gap.errs, q.gap.probing, time.Until(q.gap.retryAt), q.hold)
		}
	}
	fmt.Fprintf(&b, "\nrest queued %d", d.sess.sched.pending())
	table := d.table.Load()
	for name, r := range d.srv.Produced() {
		i, ok := table.Lookup([]byte(name))
		var q *sequence
		var handed int64
		firstHanded := int64(math.MaxInt64)
		for _, sl := range slots {
			if ok && int(i) < len(sl.seqs) && sl.seqs[i] != nil {
				handed += sl.seqs[i].handed
				if sl.seqs[i].handed > 0 {
					firstHanded = min(firstHanded, sl.seqs[i].firstHanded)
				}
				if q == nil || sl.seqs[i].last > q.last {
					q = sl.seqs[i]
				}
			}
		}
		if handed != r.Count {
			fmt.Fprintf(&b, "\n%s: produced %d trades (%d..%d, withheld %v), handed over %d from %d", name, r.Count, r.First, r.Last, r.Withheld, handed, firstHanded)
		}
		switch {
		case q == nil:
			fmt.Fprintf(&b, "\n%s: produced %d..%d, never followed", name, r.First, r.Last)
		case q.last < r.Last:
			fmt.Fprintf(&b, "\n%s: produced up to %d, handed over up to %d (%v, leaving %v, withheld %v)", name, r.Last, q.last, q.state, q.leaving, r.Withheld)
		}
	}
	return b.String()
}

// trimDelisted removes from want the klines of a delisted symbol after the kline
// of its last trade in each interval: a replay goes on with empty klines, the
// daemon stops there. It returns the open time of that last kline per interval.
func trimDelisted(want map[klineKey]shard.Kline, symbol string) map[string]int64 {
	last := map[string]int64{}
	for k, v := range want {
		if k.symbol == symbol && v.Flags&shard.FlagEmpty == 0 {
			if o, ok := last[k.interval]; !ok || k.openTime > o {
				last[k.interval] = k.openTime
			}
		}
	}
	for k := range want {
		if o, ok := last[k.interval]; k.symbol == symbol && ok && k.openTime > o {
			delete(want, k)
		}
	}
	return last
}
