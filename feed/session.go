package feed

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
)

// Session follows a Binance market: it owns the symbol universe, one connection
// slot (a pipeline.Source) per WebSocket connection, the REST scheduler, the
// ticker reads that verify the streams, and the exchange clock. Use: New (reads
// the universe), pipeline.New with Sources and Config.Clock = Session.Clock,
// Start, then Pipeline.Run.
//
// Ownership: each slot's reading state belongs to its goroutine; the manager
// goroutine (Start) owns the universe and changes a slot's wanted set only
// through slot.want; REST workers hand answers to slots through mailboxes.
type Session struct {
	cfg    Config
	log    *zap.Logger
	client *exchange.Client
	dialer *exchange.DialLimiter
	table  *parse.SymbolTable
	sched  *scheduler
	clk    clock
	c      counters

	mu    sync.Mutex // guards slots and p (AddSource from the manager)
	slots []*slot
	p     *pipeline.Pipeline

	// Owned by the manager goroutine.
	universe map[string]*slot
	// listedSince is the exchange time just before the last universe read: a
	// symbol absent then and listed at the next read traded at most since then.
	listedSince int64
	delisting   map[string]int // symbols missing from consecutive reads that were ignored

	resumeMu sync.Mutex // guards cfg.Resume (slots take from it)
	tickMu   sync.Mutex
	tickWant time.Time     // a ticker read is wanted at or after this (zero: none)
	tickWake chan struct{} // capacity 1
	wg       sync.WaitGroup
}

// New reads the universe from exchangeInfo, retrying with backoff until it
// succeeds or ctx ends (a daemon started without network says what it tried and
// keeps trying), and plans the connection slots.
func New(ctx context.Context, cfg Config, table *parse.SymbolTable, log *zap.Logger) (*Session, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.StreamsPerConn <= 0 {
		cfg.StreamsPerConn = exchange.DefaultLimits(cfg.Market).MaxStreamsPerConn
	}
	if cfg.Poll <= 0 || cfg.Refresh <= 0 || cfg.TimeSync <= 0 || cfg.Stale <= 0 {
		return nil, errors.New("cannot start the live feed: Poll, Refresh, TimeSync and Stale must be positive")
	}
	cfg.Client.Market = cfg.Market
	cfg.Client.BaseURL = cfg.Endpoints.REST
	cfg.Resume = maps.Clone(cfg.Resume)
	s := &Session{
		cfg:       cfg,
		log:       log,
		client:    exchange.NewClient(cfg.Client),
		dialer:    exchange.NewDialLimiter(exchange.MaxConnAttempts, exchange.ConnAttemptWindow),
		table:     table,
		universe:  map[string]*slot{},
		delisting: map[string]int{},
		tickWake:  make(chan struct{}, 1),
	}
	s.sched = newScheduler(s.client, &s.c)
	// At start every failure is logged with its cause as it happens and paced by
	// cfg.Backoff: the client's own retries would stay silent for half a minute.
	once := cfg.Client
	once.MaxRetries = -1
	before := time.Now()
	symbols, err := s.fetchUniverse(ctx, exchange.NewClient(once), true)
	if err != nil {
		return nil, err
	}
	s.syncTime(ctx)
	s.listedSince = math.MinInt64
	if now := s.clk.now(); now != math.MinInt64 {
		s.listedSince = now - time.Since(before).Milliseconds()
	}
	n := cfg.Conns
	if n <= 0 {
		n = (len(symbols)+cfg.StreamsPerConn-1)/cfg.StreamsPerConn + 1
	}
	for i := range n {
		s.slots = append(s.slots, newSlot(s, i))
	}
	table.Add(symbols...)
	s.assign(symbols, math.MinInt64)
	return s, nil
}

// takeResume returns and forgets where symbol resumes after a restart.
func (s *Session) takeResume(symbol string) (Resume, bool) {
	s.resumeMu.Lock()
	defer s.resumeMu.Unlock()
	r, ok := s.cfg.Resume[symbol]
	delete(s.cfg.Resume, symbol)
	return r, ok
}

// Sources returns one pipeline.Source per connection slot at start, for
// pipeline.New; slots added later join through Pipeline.AddSource.
func (s *Session) Sources() []pipeline.Source {
	s.mu.Lock()
	defer s.mu.Unlock()
	src := make([]pipeline.Source, len(s.slots))
	for i, sl := range s.slots {
		src[i] = sl
	}
	return src
}

// Clock returns the exchange's current time in Unix milliseconds as last
// measured, or math.MinInt64 before the first measurement; it is the pipeline's
// Config.Clock.
func (s *Session) Clock() int64 { return s.clk.now() }

// Start attaches the pipeline (new slots join it) and starts the manager, the
// ticker reads and the REST workers; they stop with ctx.
func (s *Session) Start(ctx context.Context, p *pipeline.Pipeline) {
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
	s.sched.start(ctx, s.cfg.Workers)
	s.wg.Go(func() { s.manage(ctx) })
	s.wg.Go(func() { s.verify(ctx) })
}

// Wait returns when every goroutine Start started has stopped (after ctx ends),
// so no request of the daemon outlives it.
func (s *Session) Wait() {
	s.wg.Wait()
	s.sched.wait()
}

// Stats returns the session's counters.
func (s *Session) Stats() Stats {
	st := s.c.snapshot()
	s.mu.Lock()
	st.Slots = len(s.slots)
	for _, sl := range s.slots {
		if sl.connected.Load() {
			st.Connected++
		}
	}
	s.mu.Unlock()
	st.ClockOffsetMillis = s.clk.offsetMillis()
	st.RESTWeightUsed = s.client.Stats().UsedWeight
	return st
}

// fetchUniverse reads the tradable symbols. With retry it keeps trying with backoff
// until it succeeds or ctx ends; the error then names the last failure.
func (s *Session) fetchUniverse(ctx context.Context, client *exchange.Client, retry bool) ([]string, error) {
	b := s.cfg.Backoff
	var last error
	for {
		infos, err := client.ExchangeInfo(ctx)
		if err == nil {
			symbols := exchange.Tradable(s.cfg.Market, infos, s.cfg.QuoteAssets)
			if len(s.cfg.Symbols) > 0 {
				tradable := map[string]bool{}
				for _, sym := range symbols {
					tradable[sym] = true
				}
				symbols = symbols[:0]
				for _, sym := range s.cfg.Symbols {
					if tradable[sym] {
						symbols = append(symbols, sym)
					} else if retry {
						s.log.Warn("symbol asked for is not tradable; not followed", zap.String("symbol", sym))
					}
				}
			}
			slices.Sort(symbols)
			return slices.Compact(symbols), nil
		}
		if ctx.Err() != nil && last != nil {
			return nil, fmt.Errorf("cannot read the symbol universe from %s: %w (before: %w)", s.cfg.Endpoints.REST, err, last)
		}
		if !retry || ctx.Err() != nil {
			return nil, fmt.Errorf("cannot read the symbol universe from %s: %w", s.cfg.Endpoints.REST, err)
		}
		last = err
		wait := b.Next()
		s.log.Error("cannot read the symbol universe; retrying",
			zap.String("market", s.cfg.Market.String()), zap.String("rest", s.cfg.Endpoints.REST),
			zap.Error(err), zap.Duration("retry_in", wait))
		if exchange.Sleep(ctx, wait) != nil {
			return nil, fmt.Errorf("cannot read the symbol universe from %s: %w (before: %w)", s.cfg.Endpoints.REST, ctx.Err(), last)
		}
	}
}

// assign gives new symbols to the slots with the most room, in order, adding
// slots when all are full; listedSince is the exchange time since when symbols
// listed while running may have traded (math.MinInt64 at start).
func (s *Session) assign(symbols []string, listedSince int64) {
	for _, sym := range symbols {
		if _, ok := s.universe[sym]; ok {
			continue
		}
		s.mu.Lock()
		var best *slot
		room := 0
		for _, sl := range s.slots {
			if r := s.cfg.StreamsPerConn - sl.size(); r > room {
				best, room = sl, r
			}
		}
		if best == nil {
			best = s.addSlotLocked()
		}
		s.mu.Unlock()
		if best == nil {
			s.log.Error("no connection slot has room for a new symbol, and none can be added", zap.String("symbol", sym))
			continue
		}
		s.universe[sym] = best
		best.want(sym, true, listedSince)
	}
	s.c.symbols.Store(int64(len(s.universe)))
}

// addSlotLocked adds a slot to the running pipeline; callers hold s.mu. It
// returns nil before Start or once the pipeline stops.
func (s *Session) addSlotLocked() *slot {
	if s.p == nil {
		return nil
	}
	sl := newSlot(s, len(s.slots))
	if err := s.p.AddSource(sl); err != nil {
		s.log.Warn("cannot add a connection slot", zap.Error(err))
		return nil
	}
	s.slots = append(s.slots, sl)
	s.c.slotsAdded.Add(1)
	s.log.Info("every connection is full; added one", zap.Int("slots", len(s.slots)))
	return sl
}

// manage refreshes the universe and the clock and logs status until ctx ends.
func (s *Session) manage(ctx context.Context) {
	refresh := time.NewTicker(s.cfg.Refresh)
	defer refresh.Stop()
	sync := time.NewTicker(s.cfg.TimeSync)
	defer sync.Stop()
	var status <-chan time.Time
	if s.cfg.Status > 0 {
		t := time.NewTicker(s.cfg.Status)
		defer t.Stop()
		status = t.C
	}
	var lastRouted uint64
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			s.refresh(ctx)
		case <-sync.C:
			s.syncTime(ctx)
		case now := <-status:
			routed := s.c.handedOver.Load()
			st := s.Stats()
			s.log.Info("status",
				zap.Int("symbols", st.Symbols), zap.Int("connected", st.Connected), zap.Int("slots", st.Slots),
				zap.Float64("trades_per_sec", float64(routed-lastRouted)/now.Sub(lastAt).Seconds()),
				zap.Uint64("reconnects", st.Reconnects), zap.Uint64("duplicates", st.Duplicates),
				zap.Uint64("gaps_open", st.GapsOpened-st.GapsClosed), zap.Uint64("held", st.Held), zap.Int("holding", st.Holding),
				zap.Uint64("gaps_unfillable", st.GapsUnfillable), zap.Uint64("trades_lost", st.TradesLost),
				zap.Uint64("bogus", st.Bogus), zap.Int("rest_queued", s.sched.pending()),
				zap.Int64("rest_weight_used", st.RESTWeightUsed), zap.Int64("clock_offset_ms", st.ClockOffsetMillis))
			lastRouted, lastAt = routed, now
		}
	}
}

// refresh applies listings and delistings. A read that would delist more than
// MaxDelist of the followed symbols at once is ignored until DelistConfirm reads
// in a row agree: one bad answer must not empty the feed.
func (s *Session) refresh(ctx context.Context) {
	at := s.clk.now()
	symbols, err := s.fetchUniverse(ctx, s.client, false)
	if err != nil {
		s.log.Warn("cannot refresh the symbol universe", zap.Error(err))
		return
	}
	since := s.listedSince
	s.listedSince = at
	now := map[string]bool{}
	var added, gone []string
	for _, sym := range symbols {
		now[sym] = true
		if _, ok := s.universe[sym]; !ok {
			added = append(added, sym)
		}
	}
	for sym := range s.universe {
		if !now[sym] {
			gone = append(gone, sym)
		}
	}
	slices.Sort(gone)
	if len(gone) > 0 && float64(len(gone)) > s.cfg.MaxDelist*float64(len(s.universe)) {
		confirmed := true
		for _, sym := range gone {
			s.delisting[sym]++
			confirmed = confirmed && s.delisting[sym] >= s.cfg.DelistConfirm
		}
		if !confirmed {
			s.c.universeRejected.Add(1)
			s.log.Error("exchangeInfo would delist too many symbols at once; ignoring it until it repeats",
				zap.Int("delisted", len(gone)), zap.Int("followed", len(s.universe)),
				zap.Float64("max_share", s.cfg.MaxDelist), zap.Int("confirm_reads", s.cfg.DelistConfirm))
			gone = nil
		}
	}
	for sym := range s.delisting {
		if now[sym] {
			delete(s.delisting, sym)
		}
	}
	for _, sym := range gone {
		delete(s.delisting, sym)
		sl := s.universe[sym]
		delete(s.universe, sym)
		sl.want(sym, false, math.MinInt64)
		s.c.delisted.Add(1)
		s.log.Info("symbol delisted; unsubscribing and closing its klines", zap.String("symbol", sym))
	}
	if len(added) > 0 {
		s.table.Add(added...)
		s.assign(added, since)
		s.c.listed.Add(uint64(len(added)))
		s.log.Info("symbols listed; subscribing", zap.Strings("symbols", added))
	}
	s.c.symbols.Store(int64(len(s.universe)))
}

// wantTicker asks for a ticker read sent at or after at. Reads are shared: one
// answers every slot. Any goroutine may call it.
func (s *Session) wantTicker(at time.Time) {
	s.tickMu.Lock()
	if s.tickWant.IsZero() || at.Before(s.tickWant) {
		s.tickWant = at
	}
	s.tickMu.Unlock()
	select {
	case s.tickWake <- struct{}{}:
	default:
	}
}

// minTickerGap bounds how often the ticker is read, whatever asks for it: a
// read costs 40 weight on futures, 80 on spot.
const minTickerGap = 2 * time.Second

// verify reads the 24 h ticker every Verify and when a slot asks, and hands
// each read to every slot.
func (s *Session) verify(ctx context.Context) {
	next := time.Now().Add(s.cfg.Verify)
	var last time.Time
	inFlight := false
	done := make(chan bool, 1)
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.tickWake:
		case ok := <-done:
			inFlight = false
			if !ok {
				next = time.Now().Add(5 * time.Second) // a failed read: try again soon
			}
		}
		s.tickMu.Lock()
		if !s.tickWant.IsZero() && s.tickWant.Before(next) {
			next = s.tickWant
		}
		s.tickMu.Unlock()
		due := next
		if !last.IsZero() && due.Before(last.Add(minTickerGap)) {
			due = last.Add(minTickerGap)
		}
		if inFlight || time.Now().Before(due) {
			timer.Reset(max(time.Until(due), time.Millisecond))
			continue
		}
		s.tickMu.Lock()
		s.tickWant = time.Time{}
		s.tickMu.Unlock()
		last, inFlight = time.Now(), true
		next = last.Add(s.cfg.Verify)
		timer.Reset(s.cfg.Verify)
		s.sched.submit(prioTicker, func(ctx context.Context) {
			sentAt := time.Now()
			ids, err := s.client.LastTrades(ctx)
			if err != nil {
				s.c.tickerFailures.Add(1)
				if ctx.Err() == nil {
					s.log.Warn("cannot read the 24h tickers to verify the streams", zap.Error(err))
				}
				done <- false
				return
			}
			s.c.tickerReads.Add(1)
			s.mu.Lock()
			slots := slices.Clone(s.slots)
			s.mu.Unlock()
			for _, sl := range slots {
				sl.box.putTicker(tickerRead{sentAt: sentAt, last: ids})
			}
			done <- true
		})
	}
}

// syncTime measures the exchange clock: server time + rtt/2 at the response.
func (s *Session) syncTime(ctx context.Context) {
	server, rtt, err := s.client.ServerTime(ctx)
	if err != nil {
		s.c.timeSyncFailures.Add(1)
		s.log.Warn("cannot read the exchange's time", zap.Error(err))
		return
	}
	s.clk.set(server + rtt.Milliseconds()/2)
	s.c.timeSyncs.Add(1)
}
