package feed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/shard"
)

// History backfill: the closed klines of periods before the daemon followed a
// series, fetched from REST klines on the session's scheduler at prioBackfill,
// below every live request: a fill, a ticker read or a listing's trades waiting
// in the queue always goes first, and at most one backfill request per worker
// (already taken) runs ahead of it. Priority alone would still let the backfill
// spend the minute's weight and leave a fill waiting for the next minute, so a
// backfill request starts only while the weight used this minute (as the last
// answer reported it, plus what the backfill reserved since) leaves room under
// MaxShare of the limit; otherwise its worker lets it go at once and it waits
// for the next minute (BackfillStats.Deferred). The client's own budget (90% of
// the limit) still applies to every request.
//
// A task is one series' range of open times [From, To). It is fetched newest
// page first, one page in flight per task, so what is stored of it is always a
// contiguous run ending at To: a restart asks only for [From, oldest stored).
// A page that comes back empty ends the task (the symbol was not listed yet).
//
// Ownership: Add and Stats from any goroutine; Run owns the queue and calls the
// sink, one page at a time, on its own goroutine: the workers only fetch.

// BackfillConfig configures a Backfiller. Zero fields take DefaultBackfillConfig's.
type BackfillConfig struct {
	// PageLimit is the most klines one request asks for: 1000 costs weight 5 on
	// futures (2 on spot) where 1500 costs 10, so 1000 is the cheapest per kline
	// among full pages.
	PageLimit int
	// InFlight is how many pages are queued, fetched or waiting for the sink at
	// once: enough to keep the workers busy, few enough that the scheduler's
	// queue (rest_queued) stays meaningful.
	InFlight int
	// Retries is how many times a failed page is asked again before its task is
	// given up (counted, logged); the client already retried transient errors.
	Retries int
	// RetryWait is the pause before a failed page is asked again.
	RetryWait time.Duration
	// MaxShare is the share of the minute's request weight the backfill may
	// bring the use up to; the rest is left to the live feed.
	MaxShare float64
	// WeightPerMinute is the limit MaxShare applies to (0: the session's
	// client's, or Binance's for the market).
	WeightPerMinute int
}

// DefaultBackfillConfig returns pages of 1000, 4 in flight, 5 retries 5 s apart,
// at most half the weight limit.
func DefaultBackfillConfig() BackfillConfig {
	return BackfillConfig{PageLimit: 1000, InFlight: 4, Retries: 5, RetryWait: 5 * time.Second, MaxShare: 0.5}
}

// BackfillTask asks for the closed klines of one series with open times in
// [From, To); From and To are open times on Interval's grid.
type BackfillTask struct {
	Symbol   string
	Interval shard.Interval
	From, To int64
}

// BackfillPage is one answer for a task: Klines, oldest first, all with open
// times in [Task.From, Task.To). Last says the task ends with it.
type BackfillPage struct {
	Task   BackfillTask
	Klines []exchange.RESTKline
	Last   bool
}

// BackfillStats counts a Backfiller's work.
type BackfillStats struct {
	Tasks, TasksDone, TasksFailed uint64 // TasksDone includes the failed ones
	Periods, PeriodsDone          int64  // periods asked for, and covered (fetched, or found not to exist)
	Requests, Errors              uint64 // klines requests made, and those that failed
	Klines                        uint64 // klines fetched and handed to the sink
	Deferred                      uint64 // requests put off to the next minute (MaxShare)
}

// Backfiller fetches history klines on a Session's scheduler; see above.
type Backfiller struct {
	cfg    BackfillConfig
	sched  *scheduler
	client *exchange.Client
	market exchange.Market
	sink   func(context.Context, BackfillPage) error
	log    *zap.Logger

	mu    sync.Mutex
	added []*backfillTask // new tasks, taken by Run
	wake  chan struct{}   // capacity 1

	tasks, tasksDone, tasksFailed atomic.Uint64
	periods, periodsDone          atomic.Int64
	requests, errs, klines        atomic.Uint64
	deferred                      atomic.Uint64

	// The weight used in minute (Unix), as the last answer reported it plus
	// what backfill requests reserved since; budgetMu guards both.
	budgetMu sync.Mutex
	minute   int64
	used     int
	now      func() time.Time
}

// backfillTask is a task being fetched: to is the end of the next page.
type backfillTask struct {
	BackfillTask
	to    int64
	tries int
}

// NewBackfiller returns a Backfiller that fetches on s's scheduler (its workers
// run once s is started) and hands every page to sink, on Run's goroutine. An
// error from sink stops Run with it.
func (s *Session) NewBackfiller(cfg BackfillConfig, sink func(context.Context, BackfillPage) error) *Backfiller {
	if cfg.WeightPerMinute <= 0 {
		cfg.WeightPerMinute = s.cfg.Client.WeightPerMinute
	}
	return newBackfiller(cfg, s.sched, s.client, s.cfg.Market, sink, s.log.Named("backfill"))
}

func newBackfiller(cfg BackfillConfig, sched *scheduler, client *exchange.Client, market exchange.Market,
	sink func(context.Context, BackfillPage) error, log *zap.Logger) *Backfiller {
	d := DefaultBackfillConfig()
	if cfg.PageLimit <= 0 {
		cfg.PageLimit = d.PageLimit
	}
	if market == exchange.Spot {
		cfg.PageLimit = min(cfg.PageLimit, 1000)
	} else {
		cfg.PageLimit = min(cfg.PageLimit, 1500)
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = d.InFlight
	}
	if cfg.Retries <= 0 {
		cfg.Retries = d.Retries
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = d.RetryWait
	}
	if cfg.MaxShare <= 0 || cfg.MaxShare > 1 {
		cfg.MaxShare = d.MaxShare
	}
	if cfg.WeightPerMinute <= 0 {
		cfg.WeightPerMinute = exchange.DefaultLimits(market).WeightPerMinute
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Backfiller{cfg: cfg, sched: sched, client: client, market: market, sink: sink, log: log,
		wake: make(chan struct{}, 1), now: time.Now}
}

// periods returns the number of periods of iv in [from, to).
func periods(iv shard.Interval, from, to int64) int64 {
	if to <= from {
		return 0
	}
	return iv.Period(to) - iv.Period(from)
}

// periodsBack returns the open time n periods of iv before open.
func periodsBack(iv shard.Interval, open int64, n int64) int64 {
	if iv.Months > 0 {
		return time.UnixMilli(open).UTC().AddDate(0, -int(n)*iv.Months, 0).UnixMilli()
	}
	return open - n*iv.Millis
}

// Add queues tasks; an empty range or a bad task (off the grid) is skipped.
// Any goroutine.
func (b *Backfiller) Add(tasks ...BackfillTask) error {
	var bad error
	b.mu.Lock()
	for _, t := range tasks {
		iv := t.Interval
		if t.Symbol == "" || iv.Name == "" || iv.OpenTime(t.From) != t.From || iv.OpenTime(t.To) != t.To {
			bad = errors.Join(bad, fmt.Errorf("cannot backfill %s %s [%d, %d): bounds off the interval's grid", t.Symbol, iv.Name, t.From, t.To))
			continue
		}
		n := periods(iv, t.From, t.To)
		if n <= 0 {
			continue
		}
		b.tasks.Add(1)
		b.periods.Add(n)
		b.added = append(b.added, &backfillTask{BackfillTask: t, to: t.To})
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return bad
}

// Stats returns the counters; any goroutine.
func (b *Backfiller) Stats() BackfillStats {
	return BackfillStats{
		Tasks: b.tasks.Load(), TasksDone: b.tasksDone.Load(), TasksFailed: b.tasksFailed.Load(),
		Periods: b.periods.Load(), PeriodsDone: b.periodsDone.Load(),
		Requests: b.requests.Load(), Errors: b.errs.Load(), Klines: b.klines.Load(), Deferred: b.deferred.Load(),
	}
}

// backfillAnswer is a fetched page, from a worker to Run.
type backfillAnswer struct {
	task   *backfillTask
	from   int64 // the page's first open time asked for
	limit  int
	klines []exchange.RESTKline
	err    error
	// deferred: not sent, the minute's weight is the live feed's (MaxShare).
	deferred bool
}

// Run fetches the tasks added, before and while it runs, until ctx ends or the
// sink fails. It returns nil when ctx ends.
func (b *Backfiller) Run(ctx context.Context) error {
	var queue []*backfillTask // next pages to ask for; a task's next page goes first
	inFlight := 0
	answers := make(chan backfillAnswer, b.cfg.InFlight)
	retry := make(chan *backfillTask, b.cfg.InFlight)
	for {
		b.mu.Lock()
		queue = append(queue, b.added...)
		b.added = b.added[:0]
		b.mu.Unlock()
		for inFlight < b.cfg.InFlight && len(queue) > 0 {
			t := queue[0]
			queue = queue[1:]
			inFlight++
			b.submit(ctx, t, answers)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-b.wake:
		case t := <-retry:
			inFlight--
			queue = append([]*backfillTask{t}, queue...)
		case a := <-answers:
			next, err := b.handle(ctx, a)
			if err != nil {
				return err
			}
			switch {
			case next == nil:
				inFlight--
			case a.deferred || a.err != nil:
				// Still in flight while it waits: the pause holds its place.
				wait := b.cfg.RetryWait
				if a.deferred {
					now := b.now()
					wait = now.Truncate(time.Minute).Add(time.Minute + 100*time.Millisecond).Sub(now)
				}
				time.AfterFunc(wait, func() {
					select {
					case retry <- next:
					case <-ctx.Done():
					}
				})
			default:
				inFlight--
				queue = append([]*backfillTask{next}, queue...)
			}
		}
	}
}

// submit queues t's next page on the scheduler.
func (b *Backfiller) submit(ctx context.Context, t *backfillTask, answers chan<- backfillAnswer) {
	limit := int(min(periods(t.Interval, t.From, t.to), int64(b.cfg.PageLimit)))
	from := periodsBack(t.Interval, t.to, int64(limit))
	w := exchange.KlinesWeight(b.market, limit)
	b.sched.submit(prioBackfill, func(ctx context.Context) {
		if !b.reserve(w) {
			b.deferred.Add(1)
			select {
			case answers <- backfillAnswer{task: t, deferred: true}:
			case <-ctx.Done():
			}
			return
		}
		b.requests.Add(1)
		// Both bounds, so that Binance answers exactly [from, to): with endTime
		// alone it would answer the newest limit klines up to endTime, which
		// fakex does not implement.
		ks, err := b.client.Klines(ctx, t.Symbol, t.Interval.Name, from, t.to-1, limit)
		b.observe()
		select {
		case answers <- backfillAnswer{task: t, from: from, limit: limit, klines: ks, err: err}:
		case <-ctx.Done():
		}
	})
}

// handle takes a page: it returns the task again when it has a next page (or
// is to be retried after an error), nil when it is done.
func (b *Backfiller) handle(ctx context.Context, a backfillAnswer) (*backfillTask, error) {
	t := a.task
	if a.deferred {
		return t, nil
	}
	if a.err != nil {
		b.errs.Add(1)
		if ctx.Err() != nil {
			return nil, nil
		}
		t.tries++
		// A rejection (a 4xx: invalid symbol or interval) will not change.
		if t.tries > b.cfg.Retries || errors.Is(a.err, exchange.ErrBadRequest) || errors.Is(a.err, exchange.ErrRejected) {
			b.tasksFailed.Add(1)
			b.done(t)
			b.log.Warn("cannot backfill a series; giving it up", zap.String("symbol", t.Symbol), zap.String("interval", t.Interval.Name),
				zap.Int64("from", t.From), zap.Int64("to", t.to), zap.Int("tries", t.tries), zap.Error(a.err))
			return nil, nil
		}
		b.log.Info("cannot fetch history klines; retrying", zap.String("symbol", t.Symbol), zap.String("interval", t.Interval.Name),
			zap.Int("try", t.tries), zap.Duration("retry_in", b.cfg.RetryWait), zap.Error(a.err))
		return t, nil
	}
	t.tries = 0
	// Keep what was asked for: an answer past the range (a server ignoring a
	// bound) must not reach a period the task does not own.
	ks := a.klines[:0:0]
	for i := range a.klines {
		if o := a.klines[i].OpenTime; o >= max(a.from, t.From) && o < t.to {
			ks = append(ks, a.klines[i])
		}
	}
	last := len(ks) == 0 || a.from <= t.From
	page := BackfillPage{Task: t.BackfillTask, Klines: ks, Last: last}
	if err := b.sink(ctx, page); err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("cannot store history klines of %s %s: %w", t.Symbol, t.Interval.Name, err)
	}
	b.klines.Add(uint64(len(ks)))
	if last {
		b.done(t)
		return nil, nil
	}
	b.periodsDone.Add(periods(t.Interval, a.from, t.to))
	t.to = a.from
	return t, nil
}

// done counts t finished: its periods not fetched do not exist (or were given up).
func (b *Backfiller) done(t *backfillTask) {
	b.periodsDone.Add(periods(t.Interval, t.From, t.to))
	t.to = t.From
	b.tasksDone.Add(1)
}

// reserve reports whether a request of weight w leaves the minute's use under
// MaxShare of the limit, and counts it when it does. A new minute starts from
// nothing: the live feed's use shows in the next answer.
func (b *Backfiller) reserve(w int) bool {
	b.budgetMu.Lock()
	defer b.budgetMu.Unlock()
	if m := b.now().Unix() / 60; m != b.minute {
		b.minute, b.used = m, 0
	}
	if b.used+w > int(b.cfg.MaxShare*float64(b.cfg.WeightPerMinute)) {
		return false
	}
	b.used += w
	return true
}

// observe takes the weight used this minute from the client's last answer
// (Binance's X-MBX-USED-WEIGHT-1M: every request of the IP counts).
func (b *Backfiller) observe() {
	used := int(b.client.Stats().UsedWeight)
	b.budgetMu.Lock()
	defer b.budgetMu.Unlock()
	if m := b.now().Unix() / 60; m != b.minute {
		b.minute, b.used = m, used
		return
	}
	b.used = max(b.used, used)
}
