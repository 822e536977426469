package feed

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Workiva/go-datastructures/queue"

	"github.com/klagg/klagg/exchange"
)

// priority orders REST requests: under a binding weight budget the most urgent
// go first. Lower is more urgent.
type priority uint8

const (
	// prioFill: missing trades with trades held behind them and klines waiting.
	prioFill priority = iota
	// prioTicker: one read that verifies every reconnected symbol at once.
	prioTicker
	// prioListing: a new listing's trades since it was listed.
	prioListing
	// prioBackfill: history klines (backfill.go), after everything live.
	prioBackfill
)

// job is one REST request waiting for a worker. Workiva's PriorityQueue orders
// them: many producers (slots, the session), a few consumers (workers), and
// Get blocks until there is work, which a channel per priority cannot do in one
// select without starving the lower ones.
type job struct {
	prio priority
	seq  uint64 // FIFO within a priority
	run  func(ctx context.Context)
}

// Compare implements queue.Item: more urgent first, then older first.
func (j *job) Compare(other queue.Item) int {
	o := other.(*job)
	switch {
	case j.prio != o.prio:
		return int(j.prio) - int(o.prio)
	case j.seq < o.seq:
		return -1
	case j.seq > o.seq:
		return 1
	}
	return 0
}

// scheduler runs REST requests by priority on a few workers. The client below
// budgets the weight (and pauses everything on 429/418), so a worker that takes
// a job may wait for the budget; at most one job per worker is then overtaken.
type scheduler struct {
	client *exchange.Client
	pq     *queue.PriorityQueue
	seq    atomic.Uint64
	c      *counters
	wg     sync.WaitGroup
}

func newScheduler(client *exchange.Client, c *counters) *scheduler {
	return &scheduler{client: client, pq: queue.NewPriorityQueue(256, true), c: c}
}

// submit queues fn at prio. It never blocks; after stop it drops the job.
func (s *scheduler) submit(prio priority, fn func(ctx context.Context)) {
	_ = s.pq.Put(&job{prio: prio, seq: s.seq.Add(1), run: fn})
}

// start runs n workers until ctx ends.
func (s *scheduler) start(ctx context.Context, n int) {
	for range max(n, 1) {
		s.wg.Go(func() {
			for {
				items, err := s.pq.Get(1)
				if err != nil || len(items) == 0 {
					return // disposed
				}
				if ctx.Err() != nil {
					return
				}
				s.c.requests.Add(1)
				items[0].(*job).run(ctx)
			}
		})
	}
	context.AfterFunc(ctx, s.pq.Dispose)
}

// wait returns when every worker has stopped.
func (s *scheduler) wait() { s.wg.Wait() }

// pending is the number of queued requests.
func (s *scheduler) pending() int { return s.pq.Len() }

// fetchTrades performs a sequence's fetch and returns its answer.
func fetchTrades(ctx context.Context, client *exchange.Client, name string, f fetch) fetched {
	r := fetched{fetch: f}
	switch f.kind {
	case fetchFill:
		r.trades, r.err = client.AggTrades(ctx, name, f.sym, f.from, f.limit, nil)
	case fetchSince:
		r.trades, r.err = client.AggTradesSince(ctx, name, f.sym, f.from, f.limit, nil)
	case fetchNewest:
		r.trades, r.err = client.AggTrades(ctx, name, f.sym, -1, 1, nil)
	}
	return r
}

// tickerRead is one 24 h ticker read: every symbol's last trade id.
type tickerRead struct {
	sentAt time.Time
	last   map[string]exchange.LastTrade
}

// mailbox carries REST answers to a slot's goroutine without ever blocking the
// worker: one slot busy reconnecting cannot stall the fills of the others.
type mailbox struct {
	mu      sync.Mutex
	fetched []fetched
	tickers []tickerRead
	wake    chan struct{} // capacity 1
}

func newMailbox() *mailbox { return &mailbox{wake: make(chan struct{}, 1)} }

func (m *mailbox) putFetched(r fetched) {
	m.mu.Lock()
	m.fetched = append(m.fetched, r)
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox) putTicker(r tickerRead) {
	m.mu.Lock()
	m.tickers = append(m.tickers, r)
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// take returns and forgets what arrived.
func (m *mailbox) take() ([]fetched, []tickerRead) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, t := m.fetched, m.tickers
	m.fetched, m.tickers = nil, nil
	return f, t
}
