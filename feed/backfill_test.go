package feed

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/shard"
)

// historyServer starts a futures fakex replaying the real XRPETH aggTrades
// (2019-10-11..13) under n symbol names (S0000USDT, ...), as fast as it can,
// and returns it once the replay is over: its REST klines then serve hours of
// history per symbol (the last 2,222 trades each, about ten hours).
func historyServer(t testing.TB, n, weightPerMinute int) *fakex.Server {
	t.Helper()
	src, err := filepath.Abs(dataFile(t, "XRPETH-aggTrades-2019-10-11.csv"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fakex.DefaultConfig()
	cfg.Speed = 0
	cfg.WeightPerMinute = weightPerMinute
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("S%04dUSDT-aggTrades-2019-10-11.csv", i))
		if err := os.Symlink(src, p); err != nil {
			t.Fatal(err)
		}
		cfg.Replay = append(cfg.Replay, p)
	}
	srv, err := fakex.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	select {
	case <-srv.Done():
	case <-time.After(3 * time.Minute):
		t.Fatal("fakex replay did not finish in 3 minutes")
	}
	return srv
}

// requestLog records, in order, the REST requests a client sends (by endpoint)
// and the events a test adds.
type requestLog struct {
	mu         sync.Mutex
	events     []string
	next       http.RoundTripper
	klinesUsed int // the largest X-MBX-USED-WEIGHT-1M a klines answer carried
}

func (l *requestLog) add(ev string) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *requestLog) RoundTrip(r *http.Request) (*http.Response, error) {
	endpoint := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	l.add(endpoint)
	resp, err := l.next.RoundTrip(r)
	if err == nil && endpoint == "klines" {
		used, _ := strconv.Atoi(resp.Header.Get("X-MBX-USED-WEIGHT-1M"))
		l.mu.Lock()
		l.klinesUsed = max(l.klinesUsed, used)
		l.mu.Unlock()
	}
	return resp, err
}

func (l *requestLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// pageSink keeps every page a Backfiller hands over, by series.
type pageSink struct {
	mu    sync.Mutex
	pages map[string][]BackfillPage
}

func (s *pageSink) put(_ context.Context, p BackfillPage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pages == nil {
		s.pages = map[string][]BackfillPage{}
	}
	key := p.Task.Symbol + " " + p.Task.Interval.Name
	s.pages[key] = append(s.pages[key], p)
	return nil
}

// TestBackfillScale fetches 90 klines of 1m and 1h history for 450 futures
// symbols (900 requests of weight 1) under a weight budget that binds: a limit
// of 1,200 a minute of which the backfill may use half, on one worker with 64
// pages queued, while live fills (weight 20) come in. It checks that every
// series gets exactly what fakex serves, that no request was refused (429),
// that no klines request took the minute's use past half the limit (but for
// the fills'), and that each fill overtook every queued backfill request: at
// most the one the worker had already taken ran between a fill's submission
// and its request.
func TestBackfillScale(t *testing.T) {
	if testing.Short() {
		t.Skip("the weight budget binds for up to a minute")
	}
	const nsym, depth, weight = 450, 90, 1200
	srv := historyServer(t, nsym, weight)
	log := &requestLog{next: http.DefaultTransport}
	client := exchange.NewClient(exchange.ClientConfig{Market: exchange.Futures, BaseURL: srv.RESTURL(),
		HTTP: &http.Client{Transport: log, Timeout: 30 * time.Second}, WeightPerMinute: weight})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var c counters
	sched := newScheduler(client, &c)
	sched.start(ctx, 1)
	defer sched.wait()
	defer cancel()

	// The replay's last trade is 2019-10-13 11:19:28 UTC: the ranges end with
	// the last closed period before it.
	last := time.Date(2019, 10, 13, 11, 19, 28, 0, time.UTC).UnixMilli()
	ivs, err := shard.ParseIntervals("1m,1h")
	if err != nil {
		t.Fatal(err)
	}
	var sink pageSink
	b := newBackfiller(BackfillConfig{InFlight: 64, MaxShare: 0.5, WeightPerMinute: weight}, sched, client, exchange.Futures, sink.put, zaptest.NewLogger(t))
	var tasks []BackfillTask
	for i := range nsym {
		for _, iv := range ivs {
			to := iv.OpenTime(last)
			tasks = append(tasks, BackfillTask{Symbol: fmt.Sprintf("S%04dUSDT", i), Interval: iv, From: to - depth*iv.Millis, To: to})
		}
	}
	if err := b.Add(tasks...); err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(ctx) }()

	// Live fills while the backfill runs: one every 150 klines requests.
	const fills = 5
	fillDone := make(chan error, fills)
	for f := range fills {
		for n := 0; n < 150*(f+1); {
			time.Sleep(5 * time.Millisecond)
			n = 0
			for _, ev := range log.snapshot() {
				if ev == "klines" {
					n++
				}
			}
			if ctx.Err() != nil {
				t.Fatal("backfill too slow")
			}
		}
		log.add(fmt.Sprintf("fill %d submitted", f))
		sched.submit(prioFill, func(ctx context.Context) {
			_, err := client.AggTrades(ctx, "S0000USDT", 0, -1, 10, nil)
			fillDone <- err
		})
	}
	for range fills {
		if err := <-fillDone; err != nil {
			t.Fatal(err)
		}
	}
	for st := b.Stats(); st.TasksDone < st.Tasks; st = b.Stats() {
		if ctx.Err() != nil {
			t.Fatalf("backfill not done: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}

	// Ordering: between a fill's submission and its aggTrades request, at most
	// one klines request (the job the worker held); FIFO would have run up to 63.
	events := log.snapshot()
	for f := range fills {
		i := slices.Index(events, fmt.Sprintf("fill %d submitted", f))
		ahead := 0
		for _, ev := range events[i+1:] {
			if ev == "aggTrades" {
				break
			}
			if ev == "klines" {
				ahead++
			}
		}
		if ahead > 1 {
			t.Errorf("fill %d: %d backfill requests ran between its submission and its request", f, ahead)
		}
	}

	// Budget: it bound (the client waited) and fakex refused nothing.
	st := b.Stats()
	cst := client.Stats()
	rest := srv.Stats().REST
	t.Logf("backfill %+v; client waited %d times; largest use after a klines request %d; fakex %v", st, cst.WaitedForWeight, log.klinesUsed, rest)
	if st.Deferred == 0 {
		t.Error("the backfill's share of the weight never bound")
	}
	if log.klinesUsed > weight/2+fills*20 {
		t.Errorf("a klines request took the minute's weight to %d: more than half of %d and the fills' %d", log.klinesUsed, weight, fills*20)
	}
	for k, n := range rest {
		if k.Status == http.StatusTooManyRequests {
			t.Errorf("%d requests refused with 429 (%s)", n, k.Endpoint)
		}
	}
	if st.Requests != uint64(len(tasks)) || st.Errors != 0 || st.TasksFailed != 0 || st.PeriodsDone != st.Periods {
		t.Errorf("stats %+v: want one request per task, no error, every period covered", st)
	}

	// Content: every symbol replays the same trades, so every series of an
	// interval must equal what fakex serves for S0000USDT, fetched here in one
	// request per interval.
	for _, iv := range ivs {
		to := iv.OpenTime(last)
		want, err := client.Klines(context.Background(), "S0000USDT", iv.Name, to-depth*iv.Millis, to-1, depth)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 || want[len(want)-1].OpenTime != to-iv.Millis {
			t.Fatalf("%s: fakex serves %d klines", iv.Name, len(want))
		}
		if iv.Name == "1m" && len(want) != depth {
			t.Fatalf("1m: fakex serves %d klines, want %d: its history is shorter than the test assumes", len(want), depth)
		}
		for i := range nsym {
			key := fmt.Sprintf("S%04dUSDT %s", i, iv.Name)
			var got []exchange.RESTKline
			pages := sink.pages[key]
			for j, p := range pages {
				if p.Last != (j == len(pages)-1) {
					t.Fatalf("%s: page %d of %d Last=%v", key, j, len(pages), p.Last)
				}
				got = append(slices.Clone(p.Klines), got...) // newest page first
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s: backfill got %d klines, fakex serves %d (first %+v)", key, len(got), len(want), got[:min(1, len(got))])
			}
		}
	}
}

// TestBackfillPaging checks the pages of one long task: newest first, each a
// contiguous run ending where the previous began, the last one flagged, and a
// short history ending the task at the first empty page.
func TestBackfillPaging(t *testing.T) {
	srv := historyServer(t, 1, 0)
	log := &requestLog{next: http.DefaultTransport}
	client := exchange.NewClient(exchange.ClientConfig{Market: exchange.Futures, BaseURL: srv.RESTURL(),
		HTTP: &http.Client{Transport: log, Timeout: 30 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var c counters
	sched := newScheduler(client, &c)
	sched.start(ctx, 2)
	defer sched.wait()
	defer cancel()
	var sink pageSink
	b := newBackfiller(BackfillConfig{PageLimit: 200}, sched, client, exchange.Futures, sink.put, zaptest.NewLogger(t))
	last := time.Date(2019, 10, 13, 11, 19, 28, 0, time.UTC).UnixMilli()
	m, _ := shard.ParseInterval("1m")
	to := m.OpenTime(last)
	// 450 minutes: three pages of 200, 200 and 50. 5m over 3 days: the history
	// (about ten hours) ends it early.
	m5, _ := shard.ParseInterval("5m")
	to5 := m5.OpenTime(last)
	if err := b.Add(BackfillTask{Symbol: "S0000USDT", Interval: m, From: to - 450*m.Millis, To: to},
		BackfillTask{Symbol: "S0000USDT", Interval: m5, From: to5 - 864*m5.Millis, To: to5}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = b.Run(ctx) }()
	for st := b.Stats(); st.TasksDone < 2; st = b.Stats() {
		if ctx.Err() != nil {
			t.Fatalf("not done: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	// fakex starts a range at its first trade (Binance would serve the empty
	// minutes before it too), so a page may miss its leading empty minutes;
	// every kline must still be the one a single request for the whole range
	// returns, in order, newest page first.
	pages := sink.pages["S0000USDT 1m"]
	if len(pages) != 3 || !pages[2].Last || pages[0].Last || pages[1].Last {
		t.Fatalf("1m: %d pages, want 3", len(pages))
	}
	whole, err := client.Klines(ctx, "S0000USDT", "1m", to-450*m.Millis, to-1, 450)
	if err != nil {
		t.Fatal(err)
	}
	byOpen := map[int64]exchange.RESTKline{}
	for _, k := range whole {
		byOpen[k.OpenTime] = k
	}
	end, got := to, 0
	for j, p := range pages {
		lo := to - int64(200*(j+1))*m.Millis
		for i := len(p.Klines) - 1; i >= 0; i-- {
			k := p.Klines[i]
			if k.OpenTime >= end || k.OpenTime < max(lo, to-450*m.Millis) || k != byOpen[k.OpenTime] {
				t.Fatalf("1m page %d: kline %+v out of place or unlike the whole range's %+v", j, k, byOpen[k.OpenTime])
			}
			end = k.OpenTime
			got++
		}
	}
	if got < 447 {
		t.Fatalf("1m: %d klines of 450", got)
	}
	p5 := sink.pages["S0000USDT 5m"]
	n := 0
	for _, p := range p5 {
		n += len(p.Klines)
	}
	if len(p5) < 2 || !p5[len(p5)-1].Last || len(p5[len(p5)-1].Klines) != 0 || n < 100 || n >= 864 {
		t.Fatalf("5m: %d pages, %d klines: want the history's, then an empty last page", len(p5), n)
	}
	st := b.Stats()
	if st.PeriodsDone != st.Periods || st.Klines != uint64(got+n) {
		t.Fatalf("stats %+v", st)
	}
}
