package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/feed"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// History backfill (issue 7): for every series the daemon builds from trades,
// the depth closed klines before the first one it built are fetched from REST
// klines, stored flagged REST (store.PutREST: never over a kline built from
// trades), at the lowest priority of the feed's REST scheduler.
//
// The anchor of a series is the oldest kline built from trades the store holds
// for it (store.Coverage): on a first start the first kline the live pipeline
// wrote, after a restart the first of the first run, for a listing its first.
// The series' range is [anchor - depth periods, anchor); what the store holds
// already (REST rows end at the anchor, contiguous: pages are fetched newest
// first) is not asked again. The store is scanned shortly after the start and
// then every rescan, so listings and symbols that trade late are found; a
// series is planned once per run.

// registerBackfillFlag adds --backfill to fs.
func registerBackfillFlag(fs *flag.FlagSet) *int {
	return fs.Int("backfill", 1000, "closed klines of history fetched from REST for each symbol and interval before the first one built from trades (0: none)")
}

// checkBackfillFlag validates --backfill.
func checkBackfillFlag(depth int) error {
	if depth < 0 || depth > 1_000_000 {
		return usageErrorf("--backfill %d: want 0 (off) to 1000000 klines", depth)
	}
	return nil
}

// backfillOptions are the driver's settings; tests shorten them.
type backfillOptions struct {
	settle time.Duration // first scan of the store after the start: the writer's first commits are in
	rescan time.Duration // later scans: listings, symbols that traded late
	every  time.Duration // progress log period without a terminal
	fetch  feed.BackfillConfig
	bar    bool // a progress bar on stderr (a terminal)
}

func defaultBackfillOptions() backfillOptions {
	return backfillOptions{settle: 3 * time.Second, rescan: 15 * time.Second, every: 10 * time.Second,
		fetch: feed.DefaultBackfillConfig(), bar: term.IsTerminal(int(os.Stderr.Fd()))}
}

// backfillProgress is the running backfill: Ready for /readyz, Stats for logs
// and metrics. Any goroutine.
type backfillProgress struct {
	db        *store.DB
	market    string
	intervals map[string]shard.Interval // by name: those REST serves
	depth     int
	opt       backfillOptions
	log       *zap.Logger
	b         *feed.Backfiller // nil: off

	planned map[string]bool // series planned this run; planner goroutine
	// before is every series' newest stored open time when the daemon started
	// (fillHoles); holes pends the series whose hole is not planned yet: the
	// periods between before and the first kline this run builds from trades,
	// which a restart that did not resume the symbol missed. Planner goroutine.
	before   map[string]int64
	holes    map[string]bool
	scanned  atomic.Bool // the first scan is planned
	failed   atomic.Pointer[error]
	written  atomic.Uint64 // rows stored
	kept     atomic.Uint64 // klines not stored: a kline built from trades holds the period
	badPages atomic.Uint64 // pages refused by the store (ErrBadREST)
	wg       sync.WaitGroup
}

// startBackfill starts the history backfill of market on live's REST scheduler
// into db; call it after live.Start. depth 0 (or no db) turns it off. It stops
// with ctx.
func startBackfill(ctx context.Context, live *feed.Session, db *store.DB, market string, intervals []shard.Interval, depth int, log *zap.Logger) *backfillProgress {
	p := newBackfill(live, db, market, intervals, depth, defaultBackfillOptions(), log)
	p.start(ctx)
	return p
}

// newBackfill prepares a backfill without starting it, so that a /readyz check
// can hold it before the feed starts.
func newBackfill(live *feed.Session, db *store.DB, market string, intervals []shard.Interval, depth int, opt backfillOptions, log *zap.Logger) *backfillProgress {
	if log == nil {
		log = zap.NewNop()
	}
	p := &backfillProgress{db: db, market: market, depth: depth, opt: opt, log: log.Named("backfill"),
		intervals: map[string]shard.Interval{}, planned: map[string]bool{}}
	spot := market == exchange.Spot.String()
	for _, iv := range intervals {
		for _, b := range shard.BinanceIntervals(spot) {
			if iv == b {
				p.intervals[iv.Name] = iv
			}
		}
	}
	if depth > 0 && db != nil && len(p.intervals) > 0 {
		p.b = live.NewBackfiller(opt.fetch, p.put)
	}
	return p
}

// fillHoles makes the backfill also fetch, for every series in newest (its
// newest stored open time, read before the pipeline wrote anything) whose
// symbol is not resumed, the periods from that kline up to the first one this
// run builds from trades: a symbol down longer than the feed resumes
// (--resume-within) starts afresh, and the klines it missed while down come
// from REST, the one it left open included. Call it before start.
func (p *backfillProgress) fillHoles(newest map[string]int64, resumed map[string]feed.Resume) {
	p.before, p.holes = newest, map[string]bool{}
	for key := range newest {
		sym, _, _ := strings.Cut(key, "\x00")
		if _, ok := resumed[sym]; !ok {
			p.holes[key] = true
		}
	}
}

func (p *backfillProgress) start(ctx context.Context) {
	if p.b == nil {
		p.scanned.Store(true)
		return
	}
	p.wg.Go(func() {
		if err := p.b.Run(ctx); err != nil {
			p.failed.Store(&err)
			p.log.Error("history backfill stopped", zap.Error(err))
		}
	})
	p.wg.Go(func() { p.plan(ctx) })
	p.wg.Go(func() { p.report(ctx) })
}

// wait returns when the backfill's goroutines have stopped (after ctx ends).
func (p *backfillProgress) wait() { p.wg.Wait() }

// Ready is the /readyz check "backfill done": nil once the first scan's series
// (and any found since) are fetched, or when the backfill is off.
func (p *backfillProgress) Ready() error {
	if e := p.failed.Load(); e != nil {
		return fmt.Errorf("backfill stopped: %w", *e)
	}
	if !p.scanned.Load() {
		return errors.New("backfill not planned yet")
	}
	if p.b == nil {
		return nil
	}
	if st := p.b.Stats(); st.TasksDone < st.Tasks {
		return fmt.Errorf("backfill: %d of %d series, %d of %d klines", st.TasksDone, st.Tasks, st.PeriodsDone, st.Periods)
	}
	return nil
}

// Stats returns the fetch counters (zero when off).
func (p *backfillProgress) Stats() feed.BackfillStats {
	if p.b == nil {
		return feed.BackfillStats{}
	}
	return p.b.Stats()
}

// put stores a page; on the Backfiller's goroutine.
func (p *backfillProgress) put(ctx context.Context, page feed.BackfillPage) error {
	rows := make([]store.RESTKline, len(page.Klines))
	for i := range page.Klines {
		rows[i] = store.RESTKline(page.Klines[i])
	}
	res, err := p.db.PutREST(ctx, p.market, page.Task.Symbol, page.Task.Interval, rows)
	if errors.Is(err, store.ErrBadREST) {
		// Binance's answer, not the disk: the page is skipped (its periods stay
		// empty, a restart asks again), counted and logged.
		p.badPages.Add(1)
		p.log.Error("history klines refused; page skipped", zap.String("symbol", page.Task.Symbol),
			zap.String("interval", page.Task.Interval.Name), zap.Int("klines", len(rows)), zap.Error(err))
		return nil
	}
	if err != nil {
		return err
	}
	p.written.Add(uint64(res.Written))
	p.kept.Add(uint64(res.Kept))
	return nil
}

// plan scans the store after settle and every rescan, and adds a task for
// every series not planned yet that has a kline built from trades.
func (p *backfillProgress) plan(ctx context.Context) {
	wait := p.opt.settle
	for {
		if exchange.Sleep(ctx, wait) != nil {
			return
		}
		wait = p.opt.rescan
		cov, err := p.db.Coverage(ctx, p.market)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("cannot read what the store holds; trying again", zap.Error(err), zap.Duration("retry_in", wait))
			}
			continue
		}
		var tasks []feed.BackfillTask
		for _, c := range cov {
			iv, ok := p.intervals[c.Interval]
			key := c.Symbol + "\x00" + c.Interval
			if !ok || !c.Trades || p.planned[key] {
				continue
			}
			p.planned[key] = true
			if t, ok := backfillTask(c, iv, p.depth); ok {
				tasks = append(tasks, t)
			}
		}
		tasks = append(tasks, p.planHoles(ctx)...)
		if err := p.b.Add(tasks...); err != nil {
			p.log.Error("cannot plan the backfill of some series", zap.Error(err))
		}
		if len(tasks) > 0 {
			p.log.Info("history backfill planned", zap.Int("series", len(tasks)), zap.Int("depth", p.depth))
		}
		p.scanned.Store(true)
	}
}

// planHoles returns the tasks of the holes found since the last scan: series
// whose first kline of this run is now stored.
func (p *backfillProgress) planHoles(ctx context.Context) []feed.BackfillTask {
	var tasks []feed.BackfillTask
	for key := range p.holes {
		sym, name, _ := strings.Cut(key, "\x00")
		iv, ok := p.intervals[name]
		if !ok {
			delete(p.holes, key)
			continue
		}
		first, ok, err := p.db.FirstTradesAfter(ctx, p.market, sym, name, p.before[key])
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("cannot read what the store holds; trying again", zap.Error(err))
			}
			return tasks
		}
		if !ok {
			continue // not traded yet this run
		}
		delete(p.holes, key)
		if from := iv.OpenTime(p.before[key]); first > from {
			tasks = append(tasks, feed.BackfillTask{Symbol: sym, Interval: iv, From: from, To: first})
		}
	}
	if len(tasks) > 0 {
		p.log.Info("klines missed while down planned from REST", zap.Int("series", len(tasks)))
	}
	return tasks
}

// backfillTask returns the range of c still missing: depth periods before its
// first kline built from trades, less the REST rows already stored just below
// it.
func backfillTask(c store.Coverage, iv shard.Interval, depth int) (feed.BackfillTask, bool) {
	anchor := c.OldestTrades
	if iv.OpenTime(anchor) != anchor {
		return feed.BackfillTask{}, false
	}
	from := anchor - int64(depth)*iv.Millis
	if iv.Months > 0 {
		from = time.UnixMilli(anchor).UTC().AddDate(0, -depth*iv.Months, 0).UnixMilli()
	}
	// Not before 1970: Binance's history starts in 2017, and a negative
	// startTime is asking for trouble.
	floor := iv.OpenTime(0)
	if floor < 0 {
		floor = iv.NextOpen(floor)
	}
	from = max(from, floor)
	to := anchor
	if c.Rows && c.Oldest < to {
		to = iv.OpenTime(c.Oldest)
	}
	return feed.BackfillTask{Symbol: c.Symbol, Interval: iv, From: from, To: to}, to > from
}

// report shows the progress: a bar on a terminal, a log line every opt.every
// otherwise, and one line when everything planned is fetched.
func (p *backfillProgress) report(ctx context.Context) {
	var bar *progressbar.ProgressBar
	if p.opt.bar {
		bar = progressbar.NewOptions64(-1, progressbar.OptionSetDescription("backfill"), progressbar.OptionSetWriter(stderr.progress()),
			progressbar.OptionShowCount(), progressbar.OptionSetItsString("klines"), progressbar.OptionShowIts(),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	every := p.opt.every
	if bar != nil {
		every = 250 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastLog, lastDone int64
	done := false
	for {
		select {
		case <-ctx.Done():
			if bar != nil {
				_ = bar.Exit()
			}
			return
		case <-t.C:
		}
		st := p.b.Stats()
		if bar != nil && st.Periods > 0 {
			if bar.GetMax64() != st.Periods {
				bar.ChangeMax64(st.Periods)
			}
			_ = bar.Set64(st.PeriodsDone)
		}
		finished := p.scanned.Load() && st.TasksDone == st.Tasks
		switch {
		case finished && !done && st.Tasks > 0:
			p.log.Info("history backfill done", zap.Uint64("series", st.Tasks), zap.Uint64("failed", st.TasksFailed),
				zap.Uint64("klines", st.Klines), zap.Uint64("written", p.written.Load()), zap.Uint64("kept_from_trades", p.kept.Load()),
				zap.Uint64("bad_pages", p.badPages.Load()), zap.Uint64("requests", st.Requests), zap.Uint64("errors", st.Errors))
		case !finished && bar == nil && time.Since(time.UnixMilli(lastLog)) >= p.opt.every && st.PeriodsDone != lastDone:
			lastLog, lastDone = time.Now().UnixMilli(), st.PeriodsDone
			p.log.Info("history backfill", zap.Uint64("series_done", st.TasksDone), zap.Uint64("series", st.Tasks),
				zap.Int64("periods_done", st.PeriodsDone), zap.Int64("periods", st.Periods),
				zap.String("percent", fmt.Sprintf("%.1f", 100*float64(st.PeriodsDone)/float64(max(st.Periods, 1)))),
				zap.Uint64("klines", st.Klines), zap.Uint64("requests", st.Requests), zap.Uint64("errors", st.Errors))
		}
		done = finished
	}
}
