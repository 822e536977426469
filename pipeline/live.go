package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/parse"
)

// LiveConfig configures the live Binance feed. Start from DefaultLiveConfig.
type LiveConfig struct {
	Market    exchange.Market
	Endpoints exchange.Endpoints
	// Symbols restricts the feed to these symbols; empty follows every tradable one
	// (futures: PERPETUAL contracts in TRADING status; spot: TRADING).
	Symbols []string
	// QuoteAssets, when Symbols is empty, keeps only symbols quoted in these.
	QuoteAssets []string
	// StreamsPerConn caps the streams of one connection (default: exchange.DefaultLimits).
	StreamsPerConn int
	// Conns is the number of connection slots; 0 sizes them for the universe at start
	// plus one spare for new listings.
	Conns int
	// Refresh is how often exchangeInfo is read again for listings and delistings.
	Refresh time.Duration
	// TimeSync is how often the exchange's clock is read.
	TimeSync time.Duration
	// Stale is how long a connection may stay silent before klagg asks REST whether
	// its symbols traded meanwhile; if they did, the connection is replaced.
	Stale time.Duration
	// Rotate is the age at which a connection is replaced, before Binance's 24 h cut.
	Rotate time.Duration
	// Overlap is how long a rotated connection is still read after its successor
	// is subscribed, so nothing falls between the two.
	Overlap time.Duration
	// Poll is how often an idle reader wakes to fill gaps and change subscriptions.
	Poll time.Duration
	// AckTimeout is how long a SUBSCRIBE may wait for its reply before the
	// connection is replaced.
	AckTimeout time.Duration
	// FillWorkers is the number of goroutines filling gaps from REST.
	FillWorkers int
	// FillTries is how often an incomplete fill is retried before the gap is
	// declared unfillable (REST may lag the stream by a moment).
	FillTries int
	// MaxHold bounds how far behind the exchange clock a pending gap holds the
	// watermark: klines close no later than MaxHold+grace after their end even while
	// a fill waits for REST (weight limits); a fill later than that arrives as a
	// correction of the closed kline.
	MaxHold time.Duration
	// Probe, after a reconnect, asks REST for each symbol's trades after the last
	// one received, so trades missed while disconnected are found even for a symbol
	// that does not trade again. It costs one aggTrades request per symbol (weight
	// 20 on futures, 4 on spot); probes yield to fills of known gaps.
	Probe bool
	// Status is how often a status line is logged; 0 turns it off.
	Status  time.Duration
	Conn    exchange.ConnConfig
	Client  exchange.ClientConfig
	Backoff exchange.Backoff
}

// DefaultLiveConfig returns the daemon's defaults for a market.
func DefaultLiveConfig(m exchange.Market) LiveConfig {
	return LiveConfig{
		Market:      m,
		Endpoints:   exchange.DefaultEndpoints(m),
		Refresh:     time.Minute,
		TimeSync:    30 * time.Second,
		Stale:       30 * time.Second,
		Rotate:      exchange.DefaultLimits(m).MaxConnAge,
		Overlap:     time.Second,
		Poll:        50 * time.Millisecond,
		AckTimeout:  10 * time.Second,
		FillWorkers: 2,
		FillTries:   5,
		MaxHold:     10 * time.Second,
		Probe:       true,
		Status:      10 * time.Second,
		Conn:        exchange.DefaultConnConfig(m),
		Client:      exchange.DefaultClientConfig(m),
		Backoff:     exchange.Backoff{Min: 500 * time.Millisecond, Max: 30 * time.Second},
	}
}

// Live follows a Binance market: it owns the symbol universe, one Source per
// connection slot, the gap fillers and the exchange clock. Use: NewLive (fetches the
// universe), pipeline.New with Sources and Config.Clock = Live.Clock, Start, then
// Pipeline.Run.
//
// Ownership: each slot's reading state belongs to its source goroutine; the
// manager goroutine (Start) owns the universe and writes a slot's wanted set only
// under that slot's mutex; fillers talk to slots through channels.
type Live struct {
	cfg    LiveConfig
	log    *zap.Logger
	client *exchange.Client
	dialer *exchange.DialLimiter
	table  *parse.SymbolTable
	p      *Pipeline
	slots  []*slot
	fills  chan fillRequest
	probes chan fillRequest
	clk    clock

	universe map[string]int // symbol -> slot
	wg       sync.WaitGroup // Start's goroutines
	// listedSince is the exchange time just before the last universe read: a
	// symbol absent then and listed at the next read traded at most since then.
	listedSince int64
	stats       liveCounters
}

// LiveStats are the live feed's counters; any goroutine may read them.
type LiveStats struct {
	Connects, ConnectFailures, Reconnects, Rotations, Shutdowns, StaleReplaced uint64
	GapsOpened, GapsFilled, GapsUnfillable, TradesFilled, TradesUnfillable     uint64
	Listed, Delisted, SubscribeErrors, TimeSyncs, TimeSyncFailures             uint64
	Duplicates                                                                 uint64 // trades received again, not handed over
	Symbols, Slots                                                             int
}

type liveCounters struct {
	connects, connectFailures, reconnects, rotations, shutdowns, staleReplaced atomic.Uint64
	gapsOpened, gapsFilled, gapsUnfillable, tradesFilled, tradesUnfillable     atomic.Uint64
	listed, delisted, subscribeErrors, timeSyncs, timeSyncFailures             atomic.Uint64
	duplicates                                                                 atomic.Uint64
	symbols                                                                    atomic.Int64
}

// NewLive reads the universe from exchangeInfo, retrying with backoff until it
// succeeds or ctx ends (a daemon started without network says what it tried and
// keeps trying), and plans the connection slots.
func NewLive(ctx context.Context, cfg LiveConfig, table *parse.SymbolTable, log *zap.Logger) (*Live, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.StreamsPerConn <= 0 {
		cfg.StreamsPerConn = exchange.DefaultLimits(cfg.Market).MaxStreamsPerConn
	}
	cfg.Client.Market = cfg.Market
	cfg.Client.BaseURL = cfg.Endpoints.REST
	l := &Live{
		cfg:      cfg,
		log:      log,
		client:   exchange.NewClient(cfg.Client),
		dialer:   exchange.NewDialLimiter(exchange.MaxConnAttempts, exchange.ConnAttemptWindow),
		table:    table,
		fills:    make(chan fillRequest, 4096),
		probes:   make(chan fillRequest, 65536),
		universe: map[string]int{},
	}
	// At start every failure is logged with its cause as it happens and paced by
	// cfg.Backoff: the client's own retries would stay silent for half a minute.
	once := cfg.Client
	once.MaxRetries = -1
	before := time.Now()
	symbols, err := l.fetchUniverse(ctx, exchange.NewClient(once), true)
	if err != nil {
		return nil, err
	}
	l.syncTime(ctx)
	l.listedSince = math.MinInt64
	if now := l.clk.now(); now != math.MinInt64 {
		l.listedSince = now - time.Since(before).Milliseconds()
	}
	n := cfg.Conns
	if n <= 0 {
		n = (len(symbols)+cfg.StreamsPerConn-1)/cfg.StreamsPerConn + 1
	}
	for i := range n {
		l.slots = append(l.slots, newSlot(l, i))
	}
	table.Add(symbols...)
	l.assign(symbols, false, 0)
	return l, nil
}

// Sources returns one Source per connection slot, for pipeline.New.
func (l *Live) Sources() []Source {
	src := make([]Source, len(l.slots))
	for i, s := range l.slots {
		src[i] = s
	}
	return src
}

// Clock returns the exchange's current time in Unix milliseconds as last measured,
// or math.MinInt64 before the first measurement; it is Config.Clock of the pipeline.
func (l *Live) Clock() int64 { return l.clk.now() }

// Start attaches the pipeline (for delistings and unfillable gaps) and starts the
// manager and the gap fillers; they stop with ctx.
func (l *Live) Start(ctx context.Context, p *Pipeline) {
	l.p = p
	for range max(1, l.cfg.FillWorkers) {
		l.wg.Go(func() { l.filler(ctx) })
	}
	l.wg.Go(func() { l.manage(ctx) })
}

// Wait returns when the goroutines Start started have stopped (after ctx ends),
// so no request of the daemon outlives it.
func (l *Live) Wait() { l.wg.Wait() }

// Stats returns the live feed's counters.
func (l *Live) Stats() LiveStats {
	c := &l.stats
	return LiveStats{
		Connects: c.connects.Load(), ConnectFailures: c.connectFailures.Load(), Reconnects: c.reconnects.Load(),
		Rotations: c.rotations.Load(), Shutdowns: c.shutdowns.Load(), StaleReplaced: c.staleReplaced.Load(),
		GapsOpened: c.gapsOpened.Load(), GapsFilled: c.gapsFilled.Load(), GapsUnfillable: c.gapsUnfillable.Load(),
		TradesFilled: c.tradesFilled.Load(), TradesUnfillable: c.tradesUnfillable.Load(),
		Listed: c.listed.Load(), Delisted: c.delisted.Load(), SubscribeErrors: c.subscribeErrors.Load(),
		TimeSyncs: c.timeSyncs.Load(), TimeSyncFailures: c.timeSyncFailures.Load(), Duplicates: c.duplicates.Load(),
		Symbols: int(c.symbols.Load()), Slots: len(l.slots),
	}
}

// fetchUniverse reads the tradable symbols. With retry it keeps trying with backoff
// until it succeeds or ctx ends; the error then names the last failure.
func (l *Live) fetchUniverse(ctx context.Context, client *exchange.Client, retry bool) ([]string, error) {
	b := l.cfg.Backoff
	var last error
	for {
		infos, err := client.ExchangeInfo(ctx)
		if err == nil {
			symbols := exchange.Tradable(l.cfg.Market, infos, l.cfg.QuoteAssets)
			if len(l.cfg.Symbols) > 0 {
				tradable := map[string]bool{}
				for _, s := range symbols {
					tradable[s] = true
				}
				symbols = symbols[:0]
				for _, s := range l.cfg.Symbols {
					if tradable[s] {
						symbols = append(symbols, s)
					} else {
						l.log.Warn("symbol asked for is not tradable; not followed", zap.String("symbol", s))
					}
				}
			}
			slices.Sort(symbols)
			return slices.Compact(symbols), nil
		}
		if ctx.Err() != nil && last != nil {
			return nil, fmt.Errorf("cannot read the symbol universe from %s: %w (before: %w)", l.cfg.Endpoints.REST, err, last)
		}
		if !retry || ctx.Err() != nil {
			return nil, fmt.Errorf("cannot read the symbol universe from %s: %w", l.cfg.Endpoints.REST, err)
		}
		last = err
		wait := b.Next()
		l.log.Error("cannot read the symbol universe; retrying",
			zap.String("market", l.cfg.Market.String()), zap.String("rest", l.cfg.Endpoints.REST),
			zap.Error(err), zap.Duration("retry_in", wait))
		if !sleep(ctx, wait) {
			return nil, fmt.Errorf("cannot read the symbol universe from %s: %w (before: %w)", l.cfg.Endpoints.REST, ctx.Err(), last)
		}
	}
}

// assign gives new symbols to the slots with the most room, in order; listed
// ones (while running) may have traded since the exchange time since.
func (l *Live) assign(symbols []string, listed bool, since int64) {
	for _, sym := range symbols {
		if _, ok := l.universe[sym]; ok {
			continue
		}
		best, room := -1, 0
		for i, s := range l.slots {
			if r := l.cfg.StreamsPerConn - s.size(); r > room {
				best, room = i, r
			}
		}
		if best < 0 {
			l.log.Error("no connection slot has room for a new symbol; raise --conns", zap.String("symbol", sym))
			continue
		}
		l.universe[sym] = best
		if listed {
			l.slots[best].list(sym, since)
		} else {
			l.slots[best].want(sym, true)
		}
	}
	l.stats.symbols.Store(int64(len(l.universe)))
}

// manage refreshes the universe and the clock and logs status until ctx ends.
func (l *Live) manage(ctx context.Context) {
	refresh := time.NewTicker(l.cfg.Refresh)
	defer refresh.Stop()
	sync := time.NewTicker(l.cfg.TimeSync)
	defer sync.Stop()
	var status <-chan time.Time
	if l.cfg.Status > 0 {
		t := time.NewTicker(l.cfg.Status)
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
			l.refresh(ctx)
		case <-sync.C:
			l.syncTime(ctx)
		case now := <-status:
			var routed uint64
			for _, f := range l.p.feeders {
				routed += f.Routed()
			}
			st := l.Stats()
			l.log.Info("status",
				zap.Int("symbols", st.Symbols), zap.Int("connected", l.connected()), zap.Int("slots", st.Slots),
				zap.Float64("trades_per_sec", float64(routed-lastRouted)/now.Sub(lastAt).Seconds()),
				zap.Uint64("reconnects", st.Reconnects), zap.Uint64("gaps_filled", st.GapsFilled),
				zap.Uint64("gaps_unfillable", st.GapsUnfillable), zap.Int64("clock_offset_ms", l.clk.offset.Load()))
			lastRouted, lastAt = routed, now
		}
	}
}

func (l *Live) connected() int {
	n := 0
	for _, s := range l.slots {
		if s.connected.Load() {
			n++
		}
	}
	return n
}

// refresh applies listings and delistings.
func (l *Live) refresh(ctx context.Context) {
	at := l.clk.now()
	symbols, err := l.fetchUniverse(ctx, l.client, false)
	if err != nil {
		l.log.Warn("cannot refresh the symbol universe", zap.Error(err))
		return
	}
	since := l.listedSince
	l.listedSince = at
	now := map[string]bool{}
	var added []string
	for _, s := range symbols {
		now[s] = true
		if _, ok := l.universe[s]; !ok {
			added = append(added, s)
		}
	}
	for s, i := range l.universe {
		if !now[s] {
			delete(l.universe, s)
			l.slots[i].want(s, false)
			l.stats.delisted.Add(1)
			l.log.Info("symbol delisted; unsubscribing and closing its klines", zap.String("symbol", s))
		}
	}
	if len(added) > 0 {
		l.table.Add(added...)
		l.assign(added, true, since)
		l.stats.listed.Add(uint64(len(added)))
		l.log.Info("symbols listed; subscribing", zap.Strings("symbols", added))
	}
	l.stats.symbols.Store(int64(len(l.universe)))
}

// syncTime measures the exchange clock: offset = server time + rtt/2 - local time.
func (l *Live) syncTime(ctx context.Context) {
	server, rtt, err := l.client.ServerTime(ctx)
	if err != nil {
		l.stats.timeSyncFailures.Add(1)
		l.log.Warn("cannot read the exchange's time", zap.Error(err))
		return
	}
	l.clk.set(server + rtt.Milliseconds()/2)
	l.stats.timeSyncs.Add(1)
}

// clock estimates the exchange's time from its last reading and the local
// monotonic clock since then.
type clock struct {
	base   time.Time // local monotonic reference
	mu     sync.Mutex
	offset atomic.Int64 // exchange ms - local ms since base
	synced atomic.Bool
}

func (c *clock) set(serverMillis int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.base.IsZero() {
		c.base = time.Now()
	}
	c.offset.Store(serverMillis - time.Since(c.base).Milliseconds())
	c.synced.Store(true)
}

func (c *clock) now() int64 {
	if !c.synced.Load() {
		return math.MinInt64
	}
	return time.Since(c.base).Milliseconds() + c.offset.Load()
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// fillRequest asks for the trades [from, to] of a symbol from REST or, for an
// anchor, for its trades made at or after since.
type fillRequest struct {
	slot     *slot
	symbol   uint32
	name     string
	from, to int64
	anchor   bool
	since    int64
}

// fillResult is what REST gave for a request.
type fillResult struct {
	req    fillRequest
	trades []parse.Trade
	err    error
}

// filler serves fill requests one at a time, known gaps before probes; the REST
// client budgets the weight and backs off on 429/418 for all fillers together.
func (l *Live) filler(ctx context.Context) {
	for {
		var req fillRequest
		select {
		case req = <-l.fills:
		default:
			select {
			case <-ctx.Done():
				return
			case req = <-l.fills:
			case req = <-l.probes:
			}
		}
		var trades []parse.Trade
		var err error
		if req.anchor {
			trades, err = l.anchor(ctx, req)
		}
		for from := req.from; !req.anchor && from <= req.to; {
			n := len(trades)
			trades, err = l.client.AggTrades(ctx, req.name, req.symbol, from, 1000, trades)
			if err != nil || len(trades) < n+1000 {
				break // an error, or the end of what is served (yet): the slot decides
			}
			from = trades[len(trades)-1].AggID + 1
		}
		select {
		case req.slot.results <- fillResult{req, trades, err}:
		case <-ctx.Done():
			return
		}
	}
}

var errStale = errors.New("connection stale: its symbols trade but it says nothing")

// maxAnchorPages bounds how far back (in pages of 1000 aggTrades) an anchor looks
// for a symbol's first trade since it is followed.
const maxAnchorPages = 10

// anchor returns a symbol's trades made at or after req.since, in id order: the
// most recent 1000, and older pages while the oldest so far is not before since.
func (l *Live) anchor(ctx context.Context, req fillRequest) ([]parse.Trade, error) {
	page, err := l.client.AggTrades(ctx, req.name, req.symbol, -1, 1000, nil)
	if err != nil {
		return nil, err
	}
	full := len(page) == 1000 // else that is the whole history
	for n := 0; full && len(page) > 0 && page[0].TradeTime >= req.since && page[0].AggID > 0 && n < maxAnchorPages; n++ {
		first := page[0].AggID
		from := max(0, first-1000)
		older, err := l.client.AggTrades(ctx, req.name, req.symbol, from, int(first-from), nil)
		if err != nil {
			return nil, err
		}
		older = slices.DeleteFunc(older, func(t parse.Trade) bool { return t.AggID >= first })
		full = len(older) == int(first-from)
		page = append(older, page...)
	}
	i, _ := slices.BinarySearchFunc(page, req.since, func(t parse.Trade, since int64) int {
		if t.TradeTime < since {
			return -1
		}
		return 1
	})
	return page[i:], nil
}
