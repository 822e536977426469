package feed

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
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
)

// slot is one connection slot: a pipeline.Source whose goroutine keeps one
// WebSocket connection for its symbols (reconnecting, rotating, resubscribing),
// decodes its frames and runs each symbol's sequence state machine.
//
// Ownership: wanted and listed belong to the session's manager goroutine and
// are read under mu; everything else belongs to the slot goroutine (Run). REST
// answers reach it through its mailbox.
type slot struct {
	s  *Session
	id int

	mu      sync.Mutex
	wanted  map[string]bool  // symbols the manager gave this slot
	listed  map[string]int64 // of those, listed while running: exchange time since they may trade
	changed atomic.Bool
	wake    chan struct{} // the manager changed wanted

	box       *mailbox
	connected atomic.Bool

	// Owned by the slot goroutine.
	f          *pipeline.Feeder
	log        *zap.Logger
	subscribed map[string]bool
	seqs       []*sequence // by symbol index
	active     []*sequence // every sequence of the slot, for ticks
	pending    map[int64]time.Time
	nextID     int64
	shutdown   bool
	backoff    exchange.Backoff
	heard      time.Time // local time of the last frame heard
	lastTick   time.Time
	asked      time.Time // a ticker read was asked for a silent connection
	staleDead  bool      // a ticker read showed the silent connection's symbols trading
	// lastEvent is the largest event time of the aggTrades read: while frames
	// keep coming, what was handed over reaches that far, not to the clock (a
	// backlog in the socket after a stall is older than now).
	lastEvent int64
	// trade is what frame decodes into: a local would escape (sequences take
	// it through the env interface) and cost an allocation per frame.
	trade parse.Trade
	// delivering is the exchange time since when the connection surely
	// delivers its symbols' trades: the event time of its first aggTrade
	// since it was dialed or since its last SUBSCRIBE was answered
	// (math.MinInt64: none yet; subscribing: a SUBSCRIBE is unanswered). Our
	// clock when the connection was made is not such a bound: the exchange
	// may put a subscription into effect a moment after it answered, and the
	// clock's offset is only as good as a request's latency.
	delivering int64
	drained    bool // the last poll found nothing to read: everything until now was read
	attention  bool // a sequence has a gap, a retry, a suspect or a hold: poll often
}

func newSlot(s *Session, id int) *slot {
	return &slot{
		s:          s,
		id:         id,
		wanted:     map[string]bool{},
		listed:     map[string]int64{},
		wake:       make(chan struct{}, 1),
		box:        newMailbox(),
		subscribed: map[string]bool{},
		pending:    map[int64]time.Time{},
		log:        s.log.With(zap.Int("conn", id)),
		backoff:    s.cfg.Backoff,
	}
}

// want adds or removes a symbol; the slot goroutine applies it at its next poll.
// Any goroutine may call it.
func (sl *slot) want(symbol string, on bool, listedSince int64) {
	sl.mu.Lock()
	if on {
		sl.wanted[symbol] = true
		if listedSince != math.MinInt64 {
			sl.listed[symbol] = listedSince
		}
	} else {
		delete(sl.wanted, symbol)
		delete(sl.listed, symbol)
	}
	sl.mu.Unlock()
	sl.changed.Store(true)
	select {
	case sl.wake <- struct{}{}:
	default:
	}
}

func (sl *slot) size() int {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return len(sl.wanted)
}

// streams returns the symbols wanted now, sorted.
func (sl *slot) streams() []string {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	out := make([]string, 0, len(sl.wanted))
	for sym := range sl.wanted {
		out = append(out, sym)
	}
	slices.Sort(out)
	return out
}

// takeListing returns and forgets the listing time of symbol, if it was listed
// while running.
func (sl *slot) takeListing(symbol string) (int64, bool) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	since, ok := sl.listed[symbol]
	delete(sl.listed, symbol)
	return since, ok
}

// env, implemented for the slot's sequences.

func (sl *slot) handOver(t *parse.Trade) { sl.f.Trade(t) }
func (sl *slot) wantTicker()             { sl.s.wantTicker(time.Now()) }
func (sl *slot) command(c parse.Trade)   { sl.f.Command(c) }
func (sl *slot) now() time.Time          { return time.Now() }
func (sl *slot) exchangeNow() int64      { return sl.s.clk.now() }
func (sl *slot) stats() *counters        { return &sl.s.c }
func (sl *slot) logger() *zap.Logger     { return sl.log }
func (sl *slot) config() *Config         { return &sl.s.cfg }

// subscribing marks slot.delivering while a SUBSCRIBE is unanswered.
const subscribing = math.MaxInt64

func (sl *slot) deliveringSince(t *parse.Trade) int64 {
	if sl.delivering == subscribing {
		return t.EventTime // a new subscription: in effect by this trade at least
	}
	return sl.delivering
}

func (sl *slot) request(f fetch) {
	name := sl.s.table.Load().Name(f.sym)
	client, box, c := sl.s.client, sl.box, &sl.s.c
	c.fetchesByKind[f.kind].Add(1)
	sl.s.sched.submit(f.prio, func(ctx context.Context) {
		box.putFetched(fetchTrades(ctx, client, name, f))
	})
}

// seq returns the sequence of symbol, creating it.
func (sl *slot) seq(symbol uint32) *sequence {
	if int(symbol) >= len(sl.seqs) {
		sl.seqs = append(sl.seqs, make([]*sequence, int(symbol)+1-len(sl.seqs))...)
	}
	q := sl.seqs[symbol]
	if q == nil {
		q = newSequence(symbol, sl.s.table.Load().Name(symbol))
		sl.seqs[symbol] = q
		sl.active = append(sl.active, q)
	}
	return q
}

// Run implements pipeline.Source: connect, serve, reconnect with backoff, until
// ctx ends.
func (sl *slot) Run(ctx context.Context, f *pipeline.Feeder) error {
	sl.f = f
	sl.resumeAll()
	for ctx.Err() == nil {
		symbols := sl.streams()
		sl.changed.Store(false)
		if len(symbols) == 0 && len(sl.subscribed) == 0 {
			sl.idleFor(ctx, time.Hour)
			continue
		}
		conn, err := sl.dial(ctx, symbols)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			sl.s.c.connectFailures.Add(1)
			wait := sl.backoff.Next()
			sl.log.Warn("cannot connect; retrying", zap.Error(err), zap.Duration("retry_in", wait))
			sl.idleFor(ctx, wait)
			continue
		}
		err = sl.serve(ctx, conn)
		sl.connected.Store(false)
		sl.lost()
		if ctx.Err() != nil {
			break
		}
		sl.s.c.reconnects.Add(1)
		wait := sl.backoff.Next()
		sl.log.Warn("connection lost; reconnecting", zap.Error(err), zap.Duration("retry_in", wait))
		sl.idleFor(ctx, wait)
	}
	for _, q := range sl.active {
		q.atExit(sl)
	}
	sl.f.Progress(math.MaxInt64)
	sl.f.Flush()
	return nil
}

// resumeAll starts the symbols a store saved before anything is published: their
// klines are held from their last stored trade on before the watermark can move.
func (sl *slot) resumeAll() {
	table := sl.s.table.Load()
	for _, name := range sl.streams() {
		if r, ok := sl.s.takeResume(name); ok {
			if i, found := table.Lookup([]byte(name)); found {
				sl.seq(i).resumeFrom(sl, r)
			}
		}
	}
}

// lost tells every sequence of the slot that the connection was lost.
func (sl *slot) lost() {
	for _, q := range sl.active {
		if sl.subscribed[q.name] {
			q.onDisconnect(sl, sl.heard)
		}
	}
	sl.flush()
}

// idleFor waits d (or until ctx ends or the manager changes the symbols) while
// applying REST answers and timers: a slot that is down still fills its gaps.
func (sl *slot) idleFor(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(sl.s.cfg.Poll)
	defer tick.Stop()
	for {
		sl.flush()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-sl.wake:
			return
		case <-sl.box.wake:
			sl.applyMail()
		case <-tick.C:
			sl.tick()
		}
	}
}

// flush publishes what was handed over and the slot's progress: the exchange
// time up to which everything was read. That is now when the last poll found
// the connection drained (or while down: nothing can be read, and the symbols
// that may miss trades hold their own klines), else the event time of the
// newest trade read. A slot blocked by backpressure publishes nothing, so
// klines wait for it instead of closing over its trades.
func (sl *slot) flush() {
	switch now := sl.s.clk.now(); {
	case len(sl.subscribed) == 0 && sl.size() == 0:
		sl.f.Progress(math.MaxInt64)
	case sl.drained || !sl.connected.Load():
		sl.f.Progress(now)
	default:
		sl.f.Progress(min(now, sl.lastEvent))
	}
	sl.f.Flush()
}

// dial opens a combined-stream connection for symbols and starts following
// them.
func (sl *slot) dial(ctx context.Context, symbols []string) (*exchange.Conn, error) {
	if err := sl.s.dialer.Wait(ctx); err != nil {
		return nil, err
	}
	conn, err := sl.open(ctx, symbols)
	if err != nil {
		return nil, err
	}
	sl.backoff.Reset()
	clear(sl.pending)
	sl.shutdown = false
	sl.delivering = math.MinInt64
	sl.subscribe(symbols)
	sl.connected.Store(true)
	sl.heard = time.Now()
	sl.log.Debug("connected", zap.Int("streams", len(symbols)))
	return conn, nil
}

// open dials the combined-stream URL of symbols.
func (sl *slot) open(ctx context.Context, symbols []string) (*exchange.Conn, error) {
	streams := make([]string, len(symbols))
	for i, sym := range symbols {
		streams[i] = exchange.StreamName(sym)
	}
	url := exchange.CombinedURL(sl.s.cfg.Market, sl.s.cfg.Endpoints.WS, streams)
	conn, err := exchange.Dial(ctx, url, sl.s.cfg.Conn)
	if err != nil {
		return nil, err
	}
	sl.s.c.connects.Add(1)
	return conn, nil
}

// subscribe makes symbols the connection's subscriptions (they took effect
// now): new ones start to be followed, dropped ones are unfollowed, and every
// one learns the connection is live.
func (sl *slot) subscribe(symbols []string) {
	table := sl.s.table.Load()
	at := sl.s.clk.now()
	now := make(map[string]bool, len(symbols))
	for _, name := range symbols {
		now[name] = true
	}
	for name := range sl.subscribed {
		if !now[name] {
			if i, ok := table.Lookup([]byte(name)); ok {
				sl.seq(i).unfollow(sl)
			}
		}
	}
	clear(sl.subscribed)
	for _, name := range symbols {
		sl.subscribed[name] = true
		i, ok := table.Lookup([]byte(name))
		if !ok {
			continue
		}
		q := sl.seq(i)
		since, listed := sl.takeListing(name)
		if !listed {
			since = at
		}
		if r, ok := sl.s.takeResume(name); ok && !listed {
			q.resumeFrom(sl, r)
		}
		q.follow(sl, since, listed)
		q.onConnected(sl, at)
	}
	if sl.hasUnverified() {
		sl.s.wantTicker(time.Now().Add(sl.s.cfg.TickerLag))
	}
}

// hasUnverified reports whether a ticker read would help a sequence: one that
// may have missed trades while down, or one that has no trade yet (its
// baseline).
func (sl *slot) hasUnverified() bool {
	for _, q := range sl.active {
		if q.state == stateUnverified || q.state == stateFresh || (q.state == stateGap && q.afterGap == stateUnverified) {
			return true
		}
	}
	return false
}

// serve reads conn until it fails, goes stale or dead, or ctx ends; rotation and
// serverShutdown replace it in place.
func (sl *slot) serve(ctx context.Context, conn *exchange.Conn) error {
	defer func() { conn.Close() }()
	cfg := &sl.s.cfg
	born := time.Now()
	lastPing := time.Now()
	// A Read that has begun waits for the rest of its message, and nothing else
	// of the slot runs meanwhile: a server that stops in the middle of a message
	// would hold the slot for ever. The watchdog closes the connection when a
	// read outlasts Stale, which replaces it like a stale one, and when ctx ends.
	var cur atomic.Pointer[exchange.Conn]
	cur.Store(conn)
	var bit atomic.Bool
	watchdog := time.AfterFunc(time.Hour, func() {
		bit.Store(true)
		cur.Load().Close()
	})
	watchdog.Stop()
	defer watchdog.Stop()
	defer context.AfterFunc(ctx, func() { cur.Load().Close() })()
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ok, err := conn.Poll(sl.pollFor())
		if err != nil {
			return err
		}
		read := 0 // data frames
		if ok {
			// Heard when the poll found data: one clock read per batch, not per
			// frame (time.Now was a tenth of the daemon's CPU at 2M trades/s on
			// a VM); up to a batch early, which only makes onDisconnect keep a
			// ticker baseline less often.
			polled := time.Now()
			watchdog.Reset(cfg.Stale)
			for n := 0; ; n++ {
				frame, err := conn.Read(nil)
				if err != nil {
					watchdog.Stop()
					if bit.Load() {
						sl.s.c.staleReplaced.Add(1)
						return fmt.Errorf("%w: a read waited %v for a message: %w", errStale, cfg.Stale, err)
					}
					return err
				}
				if len(frame) > 0 {
					sl.heard = polled
					sl.frame(frame)
					read++
				}
				if conn.Buffered() == 0 || n == 1024 {
					break
				}
			}
			watchdog.Stop()
		}
		// Nothing to read, or only pongs and pings: everything sent until now
		// was read. After data, what was read reaches its newest event time.
		sl.drained = read == 0
		sl.flush()
		sl.applyMail()
		if err := sl.checkStale(); err != nil {
			return err
		}
		sl.tick()
		if sl.changed.Load() {
			if err := sl.resubscribe(conn); err != nil {
				return err
			}
		}
		for id, sent := range sl.pending {
			if time.Since(sent) > cfg.AckTimeout {
				sl.s.c.subscribeErrors.Add(1)
				delete(sl.pending, id)
				return errors.New("no reply to a subscription request")
			}
		}
		// Liveness without REST: a ping the server does not answer. A pong
		// queued behind a backlog of data is late, not missing: while frames
		// keep coming the connection gets three times as long.
		if sent, waiting := conn.UnansweredPing(); waiting && pingDead(time.Since(sent), sl.heard.After(sent), cfg.PongTimeout) {
			sl.s.c.pingTimeouts.Add(1)
			return fmt.Errorf("%w: no pong %v after a ping", errDead, time.Since(sent).Round(time.Millisecond))
		} else if !waiting && cfg.PingEvery > 0 && time.Since(lastPing) >= cfg.PingEvery {
			lastPing = time.Now()
			if err := conn.Ping(); err != nil {
				return err
			}
		}
		if sl.shutdown || time.Since(born) >= cfg.Rotate {
			if sl.shutdown {
				sl.s.c.shutdowns.Add(1)
			}
			if next := sl.rotate(ctx, conn); next != nil {
				conn, born, lastPing = next, time.Now(), time.Now()
				cur.Store(conn)
			} else {
				// Try again later; a server that shuts down closes the old one,
				// and the reconnect path takes over.
				sl.shutdown = false
				born = time.Now().Add(-cfg.Rotate + sl.backoff.Next())
			}
		}
	}
}

// pingDead reports whether a ping unanswered for waited means a dead connection.
func pingDead(waited time.Duration, heardSince bool, timeout time.Duration) bool {
	return waited > timeout && (!heardSince || waited > 3*timeout)
}

// pollFor is how long the reader waits for a frame: Poll while a sequence needs
// attention (gaps, retries, suspects), up to idlePoll when all is quiet, so an
// idle daemon wakes a few times a second per connection, not twenty.
func (sl *slot) pollFor() time.Duration {
	if sl.attention || len(sl.pending) > 0 || sl.changed.Load() {
		return sl.s.cfg.Poll
	}
	return max(sl.s.cfg.Poll, idlePoll)
}

// idlePoll bounds how late progress and timers run on a quiet connection.
const idlePoll = 250 * time.Millisecond

// tick runs the sequences' timers, at most once per Poll.
func (sl *slot) tick() {
	now := time.Now()
	if now.Sub(sl.lastTick) < sl.s.cfg.Poll {
		return
	}
	sl.lastTick = now
	attention := false
	for _, q := range sl.active {
		if q.state != stateIdle && q.state != stateFresh {
			q.onTick(sl)
		}
		attention = attention || (q.state != stateIdle && q.state != stateFresh && q.state != stateLive) ||
			q.suspect >= 0 || q.hold != shard.NoHold
	}
	sl.attention = attention
	sl.flush()
}

// applyMail applies the REST answers and ticker reads that arrived.
func (sl *slot) applyMail() {
	fetched, tickers := sl.box.take()
	for i := range fetched {
		r := &fetched[i]
		if int(r.sym) < len(sl.seqs) && sl.seqs[r.sym] != nil {
			sl.seqs[r.sym].onFetched(sl, r)
		}
	}
	for _, tr := range tickers {
		sl.ticker(tr)
	}
	if len(fetched) > 0 || len(tickers) > 0 {
		sl.flush()
	}
}

// ticker applies a ticker read to the slot's sequences; a connection that has
// been silent since long before the read while its symbols traded is dead.
func (sl *slot) ticker(tr tickerRead) {
	silent := sl.connected.Load() && tr.sentAt.Sub(sl.heard) >= sl.s.cfg.Stale
	behind := false
	for _, q := range sl.active {
		if !sl.subscribed[q.name] {
			continue
		}
		lt, ok := tr.last[q.name]
		if !ok {
			continue
		}
		if q.state == stateLive && lt.TradeID > q.lastTID {
			behind = true
		}
		q.onTicker(sl, lt.TradeID, tr.sentAt)
	}
	if silent && behind {
		sl.staleDead = true
	}
}

// checkStale asks for a ticker read when the connection has been silent for
// Stale, and replaces the connection when the read showed its symbols trading.
func (sl *slot) checkStale() error {
	if sl.staleDead {
		sl.staleDead = false
		sl.s.c.staleReplaced.Add(1)
		sl.log.Warn("connection silent while its symbols trade; replacing it")
		return errStale
	}
	if time.Since(sl.heard) >= sl.s.cfg.Stale && time.Since(sl.asked) >= sl.s.cfg.Stale {
		sl.asked = time.Now()
		sl.s.wantTicker(time.Now())
	}
	return nil
}

// frame handles one message of the stream.
func (sl *slot) frame(frame []byte) {
	t := &sl.trade
	kind, ok := sl.f.Decode(t, frame)
	if !ok {
		return
	}
	switch kind {
	case parse.KindAggTrade:
		sl.s.c.received.Add(1)
		sl.lastEvent = max(sl.lastEvent, t.EventTime)
		if sl.delivering == math.MinInt64 {
			sl.delivering = t.EventTime
		}
		if int(t.Symbol) < len(sl.seqs) && sl.seqs[t.Symbol] != nil {
			sl.seqs[t.Symbol].onTrade(sl, t)
		} else {
			sl.s.c.unwanted.Add(1)
		}
	case parse.KindResult:
		id, code, msg, ok := exchange.ParseReply(frame)
		if !ok {
			return
		}
		delete(sl.pending, id)
		if len(sl.pending) == 0 && sl.delivering == subscribing {
			sl.delivering = math.MinInt64 // the next trade says since when
		}
		if code != 0 {
			sl.s.c.subscribeErrors.Add(1)
			sl.log.Error("subscription refused; will reconnect to resubscribe", zap.Int("code", code), zap.String("msg", msg))
			sl.shutdown = true // rotating resubscribes everything by URL
		}
	case parse.KindOther:
		if exchange.IsServerShutdown(frame) {
			sl.log.Info("serverShutdown announced; rotating the connection")
			sl.shutdown = true
		}
	}
}

// resubscribe brings the connection's subscriptions to the wanted set with
// SUBSCRIBE and UNSUBSCRIBE.
func (sl *slot) resubscribe(conn *exchange.Conn) error {
	sl.changed.Store(false)
	want := sl.streams()
	var add, remove []string
	wantSet := map[string]bool{}
	for _, sym := range want {
		wantSet[sym] = true
		if !sl.subscribed[sym] {
			add = append(add, sym)
		}
	}
	for sym := range sl.subscribed {
		if !wantSet[sym] {
			remove = append(remove, sym)
		}
	}
	slices.Sort(remove)
	if err := sl.send(conn, "SUBSCRIBE", add); err != nil {
		return err
	}
	if err := sl.send(conn, "UNSUBSCRIBE", remove); err != nil {
		return err
	}
	// New symbols are followed from now: trades before the reply may already
	// flow, and a listing's earlier trades come from REST anyway.
	sl.subscribe(want)
	return nil
}

// send writes SUBSCRIBE or UNSUBSCRIBE requests for symbols, 100 streams each; the
// connection keeps them under Binance's message rate.
func (sl *slot) send(conn *exchange.Conn, method string, symbols []string) error {
	for len(symbols) > 0 {
		n := min(len(symbols), 100)
		streams := make([]string, n)
		for i, sym := range symbols[:n] {
			streams[i] = exchange.StreamName(sym)
		}
		sl.nextID++
		if err := conn.WriteText(exchange.SubscribeMessage(nil, method, sl.nextID, streams)); err != nil {
			return err
		}
		sl.pending[sl.nextID] = time.Now()
		if method == "SUBSCRIBE" {
			sl.delivering = subscribing
		}
		symbols = symbols[n:]
	}
	return nil
}

// rotate opens the successor of conn with everything wanted now, keeps reading
// conn for the overlap and then closes it. It returns nil if the successor could
// not be opened (conn stays in use).
func (sl *slot) rotate(ctx context.Context, conn *exchange.Conn) *exchange.Conn {
	symbols := sl.streams()
	sl.changed.Store(false)
	if err := sl.s.dialer.Wait(ctx); err != nil {
		return nil
	}
	next, err := sl.open(ctx, symbols)
	if err != nil {
		sl.s.c.connectFailures.Add(1)
		sl.log.Warn("cannot open the successor of a connection; keeping the old one", zap.Error(err))
		return nil
	}
	// A read of the old connection must not outlast the overlap (see serve).
	end := time.AfterFunc(sl.s.cfg.Overlap+sl.s.cfg.Poll, func() { conn.Close() })
	defer end.Stop()
	deadline := time.Now().Add(sl.s.cfg.Overlap)
	for left := time.Until(deadline); left > 0; left = time.Until(deadline) {
		ok, err := conn.Poll(min(left, sl.s.cfg.Poll))
		if err != nil {
			break
		}
		if ok {
			frame, err := conn.Read(nil)
			if err != nil {
				break
			}
			if len(frame) > 0 {
				sl.frame(frame)
			}
		}
	}
	conn.Close()
	clear(sl.pending)
	sl.shutdown = false
	sl.s.c.rotations.Add(1)
	sl.subscribe(symbols)
	sl.heard = time.Now()
	sl.flush()
	return next
}

var (
	errStale = errors.New("connection stale: its symbols trade but it says nothing")
	errDead  = errors.New("connection dead")
)
