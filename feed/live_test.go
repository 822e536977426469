package feed

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
)

const futuresRecording = "futures-ws-2021-07-22.ndjson"

// TestLiveRecording runs the daemon against fakex replaying a real futures
// recording, with each fault alone and all together, and checks that its closed
// klines equal a plain replay of the same file and that no trade was lost.
func TestLiveRecording(t *testing.T) {
	path := dataFile(t, futuresRecording)
	// Custom intervals short enough for the 30 s recording to close many klines
	// by the exchange clock.
	const ivs = "1s,5s,1m"
	want := replay(t, ivs, &pipeline.Replay{Paths: []string{path}}, 0)
	if len(want) == 0 {
		t.Fatal("the replay closed no klines")
	}
	// The daemon's two connections carry AKRO+KEEP (13 aggTrades) and CTK+SUSHI
	// (78): frame counts are chosen so that each fault fires on both or at least
	// on the busy one.
	faults := []struct {
		spec  string
		fired []string // fault kinds fakex must have injected; "a|b": one of them
	}{
		{"", nil},
		{"drop=10", []string{"drop"}},
		{"stall=10s@1", []string{"stall"}},
		{"malformed=4", []string{"malformed"}},
		{"withhold=2@1", []string{"withhold"}},
		{"dup=3", []string{"dup"}},
		{"ratelimit=3", []string{"ratelimit"}},
		{"shutdown=9", []string{"shutdown"}},
		{"stall=600ms@4,shutdown=7,drop=9,malformed=4,withhold=2@1,dup=3,ratelimit=5",
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
			fcfg.WaitConns = 2
			fcfg.Faults = f
			fcfg.ShutdownGrace = 300 * time.Millisecond
			fcfg.PingEvery, fcfg.PongTimeout = 300*time.Millisecond, 2*time.Second
			srv := startFakex(t, fcfg)
			cfg := testConfig(srv)
			cfg.Conns = 2
			d := startDaemon(t, srv, cfg, pipelineConfig(t, ivs))
			select {
			case <-srv.Done():
			case <-time.After(30 * time.Second):
				t.Fatal("fakex did not finish its replay within 30 s")
			}
			d.waitRouted(produced(srv), 20*time.Second)
			d.stop()
			checkZeroLoss(t, d)
			got := d.col.snapshot()
			if flagged := compare(t, want, got, d.closedBy()); flagged != 0 {
				t.Errorf("%d klines flagged; nothing was lost", flagged)
			}
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
			t.Logf("%d klines closed; live %s; faults %v", len(got), statsString(d.sess.Stats()), fs.Faults)
		})
	}
}

// TestLiveSynthetic runs the daemon against fakex's synthetic feed with every
// fault at once, for a few seeds (one of them random, logged), and checks zero
// loss and klines equal to a replay of everything fakex produced.
func TestLiveSynthetic(t *testing.T) {
	const ivs = "1s,1m"
	seeds := []int64{1, 2, time.Now().UnixNano() % 1000}
	for _, seed := range seeds {
		spec := "stall=600ms@700,shutdown=1100,drop=1130,malformed=97,withhold=5@40,dup=31,ratelimit=7,seed=" + strconv.FormatInt(seed, 10)
		t.Run("seed="+strconv.FormatInt(seed, 10), func(t *testing.T) {
			srv := syntheticFakex(t, 6, 2000, spec, 2)
			cfg := testConfig(srv)
			cfg.Conns = 2
			d := startDaemon(t, srv, cfg, pipelineConfig(t, ivs))
			d.feedUntil(20*time.Second, func() bool {
				f := srv.Stats().Faults
				return f["drop"] >= 1 && f["shutdown"] >= 2 && f["stall"] >= 1 && f["withhold"] >= 3
			}, "the faults did not all fire")
			checkZeroLoss(t, d)
			got := d.col.snapshot()
			if flagged := compare(t, truth(t, srv, ivs), got, d.closedBy()); flagged != 0 {
				t.Errorf("%d klines flagged; nothing was lost", flagged)
			}
			t.Logf("spec %s: %d klines; live %s; faults %v", spec, len(got), statsString(d.sess.Stats()), srv.Stats().Faults)
		})
	}
}

// TestLiveListing lists a symbol and delists another while the daemon runs,
// with connections dropped after the listing: the listed symbol's klines start
// at its first trade, whole (REST serves its trades since the listing), the
// delisted one's klines stop after its last trade, and nothing is lost.
func TestLiveListing(t *testing.T) {
	const listed, delisted, ivs = "S0004USDT", "S0001USDT", "1s,1m"
	srv := syntheticFakex(t, 5, 1000, "list="+listed+"@300,delist="+delisted+"@1200,drop=1500", 2)
	cfg := testConfig(srv)
	cfg.Conns = 2
	cfg.MaxDelist = 1 // 1 of 4 symbols at once is a real delisting here
	d := startDaemon(t, srv, cfg, pipelineConfig(t, ivs))
	d.feedUntil(20*time.Second, func() bool {
		ls := d.sess.Stats()
		if ls.Listed != 1 || ls.Delisted != 1 || ls.Reconnects < 2 || srv.Produced()[listed].Count < 500 {
			return false
		}
		last := srv.Trades(delisted, srv.Produced()[delisted].Last, 1)
		return len(last) == 1 && srv.Clock() > last[0].TradeTime+4000
	}, "no listing, delisting and two reconnects")
	checkZeroLoss(t, d)

	want := truth(t, srv, ivs)
	got := d.col.snapshot()
	prod := srv.Produced()
	first := int64(math.MaxInt64)
	for k, v := range got {
		if k.symbol == listed && v.Flags&shard.FlagEmpty == 0 && v.FirstAggID < first {
			first = v.FirstAggID
		}
		if k.symbol == listed && v.Flags&shard.FlagPartial != 0 {
			t.Errorf("listed %s: kline %v flagged partial; its trades since the listing came from REST", listed, k)
		}
	}
	if first != prod[listed].First {
		t.Errorf("listed %s: first kline starts at aggTrade %d, its first trade is %d", listed, first, prod[listed].First)
	}
	// The delisted symbol: the reference goes on with empty klines to the end;
	// the daemon must stop at the kline of its last trade.
	for _, iv := range []string{"1s", "1m"} {
		gotLast, traded := lastKline(got, delisted, iv)
		lastTraded := int64(math.MinInt64)
		for k, v := range want {
			if k.symbol == delisted && k.interval == iv && v.Flags&shard.FlagEmpty == 0 {
				lastTraded = max(lastTraded, k.openTime)
			}
		}
		if k := want[klineKey{delisted, iv, lastTraded}]; k.CloseTime >= d.closedBy() {
			continue // its last trade's kline had not closed yet when the daemon stopped
		}
		if gotLast != lastTraded || !traded {
			t.Errorf("delisted %s %s: last kline opens at %d (traded %v), its last trade's kline at %d", delisted, iv, gotLast, traded, lastTraded)
		}
		for k := range want {
			if k.symbol == delisted && k.interval == iv && k.openTime > lastTraded {
				delete(want, k)
			}
		}
	}
	if flagged := compare(t, want, got, d.closedBy()); flagged != 0 {
		t.Errorf("%d klines flagged; nothing was lost", flagged)
	}
	t.Logf("live %s; faults %v", statsString(d.sess.Stats()), srv.Stats().Faults)
}

// TestLiveLateSubscription starts the daemon on a feed that trades before it
// connects and whose connections take effect 1.5 s after they are answered:
// the trades meanwhile never come. The klines before the first trade the
// connection delivered are flagged partial; every other equals a replay of
// what fakex produced.
func TestLiveLateSubscription(t *testing.T) {
	const ivs = "1s,1m"
	srv := syntheticFakex(t, 4, 400, "late=1500ms,seed=5", 0)
	time.Sleep(time.Second) // trading before the daemon connects
	cfg := testConfig(srv)
	// No baseline ticker read before the first trades (Binance's default lag
	// is 2 s): what proves since when the stream delivers is the stream.
	cfg.TickerLag = 5 * time.Second
	// fakex answers nothing on a connection before it takes effect, pings
	// included: with the tests' 1 s pong timeout a reconnect under load (CI)
	// met a connection dead before it took effect, and the next, for ever.
	cfg.PongTimeout = 5 * time.Second
	d := startDaemon(t, srv, cfg, pipelineConfig(t, ivs))
	waitFor(t, 20*time.Second, func() bool { return d.p.Routed() >= 2000 }, func() string {
		return "too few trades routed; live " + statsString(d.sess.Stats())
	})
	srv.Stop()
	waitFor(t, 20*time.Second, func() bool { return d.sess.Stats().Holding == 0 }, func() string {
		return "symbols still held: " + statsString(d.sess.Stats())
	})
	time.Sleep(time.Duration(d.grace)*time.Millisecond + 1500*time.Millisecond)
	d.stop()
	if f := srv.Stats().Faults["late"]; f == 0 {
		t.Fatal("no connection took effect late")
	}

	want := truth(t, srv, ivs)
	got := d.col.snapshot()
	partial := map[[2]string]int64{} // newest partial kline per series
	for k, v := range got {
		if v.Flags&shard.FlagPartial != 0 {
			s := [2]string{k.symbol, k.interval}
			partial[s] = max(partial[s], k.openTime)
		}
	}
	equal := 0
	for k, v := range got {
		if v.Flags&shard.FlagPartial != 0 || v.Flags&shard.FlagEmpty != 0 && want[k].Count == 0 {
			continue
		}
		if p, ok := partial[[2]string{k.symbol, k.interval}]; ok && k.openTime < p {
			t.Errorf("kline %v before the series' partial first kline", k)
			continue
		}
		w := want[k]
		g := v
		g.Symbol, w.Symbol = 0, 0
		g.Flags &^= shard.FlagCorrected
		if g != w {
			t.Errorf("kline %v differs, unflagged:\n got  %+v\n want %+v", k, g, w)
			continue
		}
		equal++
	}
	// A series whose first delivered trade opens a later period than the
	// one the stream was trusted from has a whole first kline: the trades
	// lost before it were in a period no kline of it covers (every kline
	// above equals the replay). The run is shorter than a minute: a 1m kline
	// may not have closed.
	ones := 0
	for s := range partial {
		if s[1] == "1s" {
			ones++
		}
	}
	if ones == 0 || equal == 0 {
		t.Errorf("%d 1s series with a partial first kline (want 1 to 4), %d klines equal", ones, equal)
	}
	t.Logf("%d klines equal, %d 1s series with a partial first kline; live %s; faults %v", equal, ones, statsString(d.sess.Stats()), srv.Stats().Faults)
}

// TestLiveRotation rotates every connection many times: the successor is
// subscribed before the old one is let go, so nothing is lost and nothing is
// reconnected. Two of the four slots have no symbol: klines still close by the
// exchange clock while running.
func TestLiveRotation(t *testing.T) {
	const ivs = "1s,1m"
	f := fakex.DefaultConfig()
	f.Symbols, f.Rate, f.WaitConns = 2, 2000, 2
	srv := startFakex(t, f)
	proxy := newRESTProxy(t, srv)
	cfg := testConfig(srv)
	cfg.Endpoints.REST = proxy.http.URL
	cfg.Conns = 4
	cfg.Rotate = 300 * time.Millisecond
	d := startDaemon(t, srv, cfg, pipelineConfig(t, ivs))
	d.feedUntil(20*time.Second, func() bool {
		n := 0
		for k := range d.col.snapshot() {
			if k.interval == "1s" && k.openTime > srv.Clock()-5000 {
				n++
			}
		}
		return d.sess.Stats().Rotations >= 6 && n > 0
	}, "fewer than 6 rotations, or klines do not close by the exchange clock")
	checkZeroLoss(t, d)
	if flagged := compare(t, truth(t, srv, ivs), d.col.snapshot(), d.closedBy()); flagged != 0 {
		t.Errorf("%d klines flagged; nothing was lost", flagged)
	}
	ls := d.sess.Stats()
	if ls.Reconnects != 0 {
		t.Errorf("%d reconnects; rotations must not need any", ls.Reconnects)
	}
	if n := proxy.count("/aggTrades"); uint64(n) > 3*ls.GapsOpened {
		t.Errorf("%d aggTrades requests for %d gaps", n, ls.GapsOpened)
	}
	t.Logf("live %s; %d duplicates from overlaps", statsString(ls), ls.Duplicates)
}

// TestLiveStale stalls connections for longer than Stale: the ticker shows their
// symbols trading meanwhile, so the daemon replaces them, and loses nothing.
func TestLiveStale(t *testing.T) {
	const ivs = "1s,1m"
	srv := syntheticFakex(t, 4, 1000, "stall=5s@400", 2)
	cfg := testConfig(srv)
	cfg.Conns = 2
	cfg.PingEvery = 0 // the stall also holds pongs back: find it by the ticker alone
	d := startDaemon(t, srv, cfg, pipelineConfig(t, ivs))
	d.feedUntil(20*time.Second, func() bool { return d.sess.Stats().StaleReplaced >= 2 }, "no two stale connections replaced")
	checkZeroLoss(t, d)
	if flagged := compare(t, truth(t, srv, ivs), d.col.snapshot(), d.closedBy()); flagged != 0 {
		t.Errorf("%d klines flagged; nothing was lost", flagged)
	}
	t.Logf("live %s; faults %v", statsString(d.sess.Stats()), srv.Stats().Faults)
}

// TestLivePingTimeout: fakex never answers the daemon's pings; the daemon takes
// each connection for dead after PongTimeout and replaces it, without REST, and
// loses nothing.
func TestLivePingTimeout(t *testing.T) {
	const ivs = "1s,1m"
	srv := syntheticFakex(t, 4, 500, "ignorepings", 2)
	cfg := testConfig(srv)
	cfg.Conns = 2
	cfg.PingEvery, cfg.PongTimeout = 200*time.Millisecond, 500*time.Millisecond
	d := startDaemon(t, srv, cfg, pipelineConfig(t, ivs))
	d.feedUntil(20*time.Second, func() bool { return d.sess.Stats().PingTimeouts >= 2 }, "no connection taken for dead by its pings")
	checkZeroLoss(t, d)
	// Once the feed stops, a server that answers no ping and sends nothing is
	// dead again and again: reconnected symbols wait for a ticker read each time,
	// so only the klines before the feed stopped must have closed.
	if flagged := compare(t, truth(t, srv, ivs), d.col.snapshot(), d.feedStopClock-d.grace-1000); flagged != 0 {
		t.Errorf("%d klines flagged; nothing was lost", flagged)
	}
	ls := d.sess.Stats()
	if ls.StaleReplaced != 0 {
		t.Errorf("%d connections replaced as stale: the pings alone must find them", ls.StaleReplaced)
	}
	t.Logf("live %s", statsString(ls))
}

// TestLiveRateLimit makes fakex answer every 8th REST request with 429 and
// Retry-After: 1 while the daemon has a burst of requests to make (fills for 20
// symbols after a reconnect): after each 429, no request may leave the daemon
// for a second except those already under way; and nothing is lost.
func TestLiveRateLimit(t *testing.T) {
	const symbols, ivs = 20, "1s,1m"
	f, err := fakex.ParseFaults("ratelimit=8,drop=800")
	if err != nil {
		t.Fatal(err)
	}
	fcfg := fakex.DefaultConfig()
	fcfg.Symbols, fcfg.Rate, fcfg.Faults, fcfg.WaitConns = symbols, 1500, f, 1
	srv := startFakex(t, fcfg)
	proxy := newRESTProxy(t, srv)
	cfg := testConfig(srv)
	cfg.Endpoints.REST = proxy.http.URL
	cfg.Conns = 1
	cfg.Workers = 1
	cfg.Refresh, cfg.TimeSync = 5*time.Second, 5*time.Second // the burst is the fills'
	d := startDaemon(t, srv, cfg, pipelineConfig(t, ivs))
	// Until a request was throttled: how many requests a reconnect costs
	// depends on how many symbols traded while it was down, so the drops go on
	// (each reconnect reads the ticker at least) until the 8th request comes.
	throttledYet := func() bool {
		for _, r := range proxy.records() {
			if r.status == http.StatusTooManyRequests {
				return true
			}
		}
		return false
	}
	waitFor(t, 60*time.Second, func() bool { return srv.Stats().Faults["drop"] >= 2 && throttledYet() },
		func() string {
			return fmt.Sprintf("%d drops, %d requests, none throttled", srv.Stats().Faults["drop"], len(proxy.records()))
		})
	srv.Stop()
	d.waitRouted(produced(srv), 30*time.Second)
	d.stop()
	checkZeroLoss(t, d)

	// Who may have a request under way when a 429 arrives: the workers and the
	// manager (universe, clock).
	concurrent := cfg.Workers + 1
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
	if throttled == 0 {
		t.Errorf("no request was throttled: %d requests", len(recs))
	}
	if worst > concurrent {
		t.Errorf("up to %d requests within a second after a 429 with Retry-After: 1; at most %d may be under way", worst, concurrent)
	}
	t.Logf("%d REST requests, %d answered 429, at most %d within a second after one (bound %d); live %s",
		len(recs), throttled, worst, concurrent, statsString(d.sess.Stats()))
}

// TestNewUnreachable starts the daemon where no exchange answers: New keeps
// trying with backoff until its context ends and then says what it tried and
// what failed.
func TestNewUnreachable(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cfg := DefaultConfig(exchange.Futures)
		cfg.Endpoints = exchange.Endpoints{WS: "ws://" + addr, REST: "http://" + addr}
		core, logs := observer.New(zap.WarnLevel)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = New(ctx, cfg, parse.NewSymbolTable(), zap.New(core))
		if err == nil || !strings.Contains(err.Error(), "http://"+addr) || !strings.Contains(err.Error(), "symbol universe") {
			t.Fatalf("New = %v, want an error naming the symbol universe and %s", err, "http://"+addr)
		}
		if ctx.Err() == nil {
			t.Errorf("New gave up before its context ended: %v", err)
		}
		retries := logs.FilterMessage("cannot read the symbol universe; retrying").All()
		if len(retries) < 2 || !strings.Contains(fmt.Sprint(retries[0].ContextMap()), "connection refused") {
			t.Errorf("no retry logged with the cause: %v", logs.All())
		}
	})
	t.Run("500", func(t *testing.T) {
		var attempts atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			attempts.Add(1)
			http.Error(w, "down for maintenance", http.StatusInternalServerError)
		}))
		defer srv.Close()
		cfg := DefaultConfig(exchange.Futures)
		cfg.Endpoints.REST = srv.URL
		cfg.Backoff = exchange.Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}
		cfg.Client.MinBackoff, cfg.Client.MaxBackoff = 10*time.Millisecond, 200*time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := New(ctx, cfg, parse.NewSymbolTable(), nil)
		if err == nil || !strings.Contains(err.Error(), srv.URL) {
			t.Fatalf("New = %v, want an error naming %s", err, srv.URL)
		}
		if n := attempts.Load(); n < 2 || n > 100 {
			t.Errorf("%d attempts in a second; want more than one, and backoff, not a spin", n)
		}
	})
	t.Run("websocket", func(t *testing.T) {
		// REST answers, the WebSocket address accepts and hangs up at once. The
		// count is exact: every attempt that reached the listener is a failure,
		// and the one the deadline cancels is counted as neither.
		fx := syntheticFakex(t, 2, 100, "", 0)
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
		cfg := testConfig(fx)
		cfg.Endpoints.WS = "ws://" + ln.Addr().String()
		cfg.Conns = 1
		core, logs := observer.New(zap.WarnLevel)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		table := parse.NewSymbolTable()
		sess, err := New(ctx, cfg, table, zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		pcfg := pipelineConfig(t, "1s")
		pcfg.Clock = sess.Clock
		p, err := pipeline.New(pcfg, table, sess.Sources(), newCollector(table, pcfg.Shard.Intervals), nil)
		if err != nil {
			t.Fatal(err)
		}
		sess.Start(ctx, p)
		if err := p.Run(ctx); err != nil {
			t.Fatal(err)
		}
		sess.Wait()
		ls := sess.Stats()
		fails := logs.FilterMessage("cannot connect; retrying").All()
		if n := accepts.Load(); n < 2 || n > 50 || ls.ConnectFailures != uint64(len(fails)) || ls.Connects != 0 {
			t.Errorf("%d connection attempts accepted, %d failures counted, %d logged, %d connects", n, ls.ConnectFailures, len(fails), ls.Connects)
		}
		if len(fails) == 0 || !strings.Contains(fmt.Sprint(fails[0].ContextMap()), cfg.Endpoints.WS) {
			t.Errorf("no connection failure logged with the address: %v", logs.All())
		}
	})
}
