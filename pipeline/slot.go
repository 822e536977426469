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

// slot is one connection slot: a Source whose goroutine keeps one WebSocket
// connection for its symbols (reconnecting, rotating and resubscribing), decodes
// its frames, checks that each symbol's aggTrade ids are consecutive and holds a
// symbol's later trades while a gap is filled from REST.
type slot struct {
	l  *Live
	id int

	mu      sync.Mutex
	wanted  map[string]bool  // written by the manager, read by the slot goroutine
	listed  map[string]int64 // symbols listed while running: exchange time since which they may trade
	changed atomic.Bool

	wake      chan struct{} // the manager changed wanted
	results   chan fillResult
	asking    sync.WaitGroup // stale checks under way; Run waits for them
	connected atomic.Bool

	// Owned by the slot goroutine.
	f          *Feeder
	log        *zap.Logger
	subscribed map[string]bool
	syms       []symState // by symbol index
	gaps       []uint32   // symbols with a gap being filled
	pending    map[int64]time.Time
	nextID     int64
	shutdown   bool
	backoff    exchange.Backoff
	everUp     bool  // a connection was established once: the next one is a reconnect
	down       bool  // the slot has symbols but no connection
	heardAt    int64 // exchange time of the last frame heard; while down, the watermark holds there
}

// symState is what a slot knows of one symbol's aggTrade ids.
type symState struct {
	last     int64 // last aggTrade id handed over; 0: none yet
	lastTime int64 // its trade time
	since    int64 // exchange time since when the slot follows it (math.MinInt64: unknown)
	tracked  bool  // since is set
	wanted   bool
	gap      *gap
	probed   int64 // last when a silence probe was opened, so a quiet symbol is probed once
}

// gap is a range of aggTrade ids missing from the stream, and the trades held
// back behind it. A probe (after a reconnect) is a gap whose end is not known yet:
// to is math.MaxInt64 until the stream delivers the symbol's next trade. An
// anchor is a probe for a symbol that has sent no trade yet: its start is not
// known either, so REST is asked for the trades made since the slot followed it
// (a symbol listed while running, or one that traded only while disconnected).
type gap struct {
	from, to int64
	probe    bool
	anchor   bool
	since    int64 // anchor: trades at or after this exchange time are wanted
	ack      int64 // anchor: wait for the reply to this SUBSCRIBE first (0: none)
	held     []parse.Trade
	tries    int
	inFlight bool
	retryAt  time.Time
}

func newSlot(l *Live, id int) *slot {
	return &slot{
		l:          l,
		id:         id,
		wanted:     map[string]bool{},
		listed:     map[string]int64{},
		wake:       make(chan struct{}, 1),
		results:    make(chan fillResult, 64),
		subscribed: map[string]bool{},
		pending:    map[int64]time.Time{},
		log:        l.log.With(zap.Int("conn", id)),
		backoff:    l.cfg.Backoff,
	}
}

// want adds or removes a symbol; the slot goroutine applies it at its next poll.
func (s *slot) want(symbol string, on bool) {
	s.mu.Lock()
	if on {
		s.wanted[symbol] = true
	} else {
		delete(s.wanted, symbol)
		delete(s.listed, symbol)
	}
	s.mu.Unlock()
	s.changed.Store(true)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// list adds a symbol listed while running, which may have traded since the
// exchange time since (math.MinInt64: unknown); its trades from then on are
// fetched from REST, so its first kline starts at its first trade.
func (s *slot) list(symbol string, since int64) {
	s.mu.Lock()
	s.listed[symbol] = since
	s.mu.Unlock()
	s.want(symbol, true)
}

// takeListings returns and forgets the listing times of the subscribed symbols
// (a symbol listed meanwhile keeps its time until it is subscribed).
func (s *slot) takeListings() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out map[string]int64
	for sym, since := range s.listed {
		if s.subscribed[sym] {
			if out == nil {
				out = map[string]int64{}
			}
			out[sym] = since
			delete(s.listed, sym)
		}
	}
	return out
}

func (s *slot) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.wanted)
}

// streams returns the symbols wanted now, sorted.
func (s *slot) streams() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.wanted))
	for sym := range s.wanted {
		out = append(out, sym)
	}
	slices.Sort(out)
	return out
}

// Run implements Source: connect, serve, reconnect with backoff, until ctx ends.
func (s *slot) Run(ctx context.Context, f *Feeder) error {
	s.f = f
	s.heardAt = math.MinInt64
	for ctx.Err() == nil {
		symbols := s.streams()
		s.changed.Store(false)
		if len(symbols) == 0 {
			// An idle slot holds nothing back: publish that, or the pipeline's
			// watermark would wait for this source forever.
			s.down = false
			s.flush()
			s.idle(ctx)
			continue
		}
		// Until connected, trades after the last frame heard may be missing.
		s.down = true
		s.flush()
		conn, err := s.dial(ctx, symbols, s.everUp)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			wait := s.backoff.Next()
			s.log.Warn("cannot connect; retrying", zap.Error(err), zap.Duration("retry_in", wait))
			s.idleFor(ctx, wait)
			continue
		}
		err = s.serve(ctx, conn)
		s.connected.Store(false)
		s.down = true
		s.flush()
		if ctx.Err() != nil {
			break
		}
		s.l.stats.reconnects.Add(1)
		wait := s.backoff.Next()
		s.log.Warn("connection lost; reconnecting", zap.Error(err), zap.Duration("retry_in", wait))
		s.idleFor(ctx, wait)
	}
	s.asking.Wait() // no REST request of this slot outlives the pipeline
	s.f.Flush()
	return nil
}

// idle waits for symbols while still applying gap fills of earlier connections.
func (s *slot) idle(ctx context.Context) {
	s.idleFor(ctx, time.Hour)
}

func (s *slot) idleFor(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-s.wake:
			return
		case r := <-s.results:
			s.filled(r)
			s.flush()
		}
	}
}

// dial opens a combined-stream connection for symbols. After a reconnect (not a
// rotation, whose predecessor is still read) every symbol is probed.
func (s *slot) dial(ctx context.Context, symbols []string, reconnect bool) (*exchange.Conn, error) {
	if err := s.l.dialer.Wait(ctx); err != nil {
		return nil, err
	}
	streams := make([]string, len(symbols))
	for i, sym := range symbols {
		streams[i] = exchange.StreamName(sym)
	}
	url := exchange.CombinedURL(s.l.cfg.Market, s.l.cfg.Endpoints.WS, streams)
	conn, err := exchange.Dial(ctx, url, s.l.cfg.Conn)
	if err != nil {
		s.l.stats.connectFailures.Add(1)
		return nil, err
	}
	s.l.stats.connects.Add(1)
	s.backoff.Reset()
	clear(s.subscribed)
	clear(s.pending)
	for _, sym := range symbols {
		s.subscribed[sym] = true
	}
	s.follow()
	s.track(reconnect && s.l.cfg.Probe, 0)
	s.shutdown = false
	s.everUp, s.down = true, false
	s.connected.Store(true)
	s.log.Debug("connected", zap.Int("streams", len(streams)))
	return conn, nil
}

func (s *slot) state(symbol uint32) *symState {
	if int(symbol) >= len(s.syms) {
		s.syms = append(s.syms, make([]symState, int(symbol)+1-len(s.syms))...)
	}
	return &s.syms[symbol]
}

// serve reads conn until it fails, goes stale or ctx ends; rotation and
// serverShutdown replace it in place.
func (s *slot) serve(ctx context.Context, conn *exchange.Conn) error {
	defer func() { conn.Close() }()
	cfg := &s.l.cfg
	born, heard := time.Now(), time.Now()
	answer := make(chan bool, 1) // a stale check's answer; buffered so it never blocks
	asking := false
	// A Read that has begun waits for the rest of its message (a lone ping
	// returns at once), and nothing else of the slot runs meanwhile: a server
	// that stops in the middle of a message would hold the slot forever. The
	// watchdog closes the connection when a read outlasts Stale, which replaces
	// it like a stale one, and when ctx ends.
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
		ok, err := conn.Poll(cfg.Poll)
		if err != nil {
			s.flush()
			return err
		}
		if ok {
			watchdog.Reset(cfg.Stale)
			for n := 0; ; n++ {
				frame, err := conn.Read(nil)
				if err != nil {
					watchdog.Stop()
					s.flush()
					if bit.Load() {
						s.l.stats.staleReplaced.Add(1)
						return fmt.Errorf("%w: a read waited %v for a message: %w", errStale, cfg.Stale, err)
					}
					return err
				}
				if len(frame) > 0 { // a lone ping is no sign of life of the stream
					heard = time.Now()
					s.heardAt = s.l.Clock()
				}
				s.frame(frame)
				if conn.Buffered() == 0 || n == 1024 {
					break
				}
			}
			watchdog.Stop()
		}
		s.flush()
		s.fills()
		if s.changed.Load() {
			if err := s.resubscribe(conn); err != nil {
				return err
			}
		}
		for id, sent := range s.pending {
			if time.Since(sent) > cfg.AckTimeout {
				s.l.stats.subscribeErrors.Add(1)
				delete(s.pending, id)
				return errors.New("no reply to a subscription request")
			}
		}
		if s.shutdown || time.Since(born) >= cfg.Rotate {
			if s.shutdown {
				s.l.stats.shutdowns.Add(1)
			}
			if next := s.rotate(ctx, conn); next != nil {
				conn, born, heard = next, time.Now(), time.Now()
				cur.Store(conn)
				s.heardAt = s.l.Clock()
			} else {
				// Try again later; a server that shuts down closes the old one,
				// and the reconnect path takes over.
				s.shutdown = false
				born = time.Now().Add(-cfg.Rotate + s.backoff.Next())
			}
		}
		if time.Since(heard) >= cfg.Stale {
			heard = time.Now()
			s.probeRecent()
			if q, ok := s.staleQuestion(s.heardAt); ok && !asking {
				asking = true
				s.asking.Add(1)
				go func() {
					defer s.asking.Done()
					answer <- s.l.stale(ctx, q)
				}()
			}
		}
		select {
		case dead := <-answer:
			asking = false
			if dead {
				s.log.Warn("connection silent while its symbols trade; replacing it")
				s.l.stats.staleReplaced.Add(1)
				return errStale
			}
		default:
		}
	}
}

// frame handles one message of the stream.
func (s *slot) frame(frame []byte) {
	if len(frame) == 0 {
		return // only a ping was read
	}
	var t parse.Trade
	kind, ok := s.f.Decode(&t, frame)
	if !ok {
		return
	}
	switch kind {
	case parse.KindAggTrade:
		s.trade(&t)
	case parse.KindResult:
		id, code, msg, ok := exchange.ParseReply(frame)
		if !ok {
			return
		}
		delete(s.pending, id)
		if code != 0 {
			s.l.stats.subscribeErrors.Add(1)
			s.log.Error("subscription refused; will reconnect to resubscribe", zap.Int("code", code), zap.String("msg", msg))
			s.shutdown = true // rotating resubscribes everything by URL
		}
	case parse.KindOther:
		if exchange.IsServerShutdown(frame) {
			s.log.Info("serverShutdown announced; rotating the connection")
			s.shutdown = true
		}
	}
}

// trade checks the symbol's ids and hands the trade over, or holds it behind a gap.
func (s *slot) trade(t *parse.Trade) {
	st := s.state(t.Symbol)
	if !st.wanted {
		return // unsubscribed: in flight before the UNSUBSCRIBE took effect
	}
	if g := st.gap; g != nil {
		if g.to == math.MaxInt64 && t.AggID >= g.from {
			// The stream delivers the probed symbol again: the probe has an end.
			g.to = t.AggID - 1
			if g.to < g.from && !g.inFlight {
				s.closeGap(t.Symbol) // nothing was missed
			}
		}
		if st.gap != nil {
			if t.AggID > g.to && (len(g.held) == 0 || t.AggID > g.held[len(g.held)-1].AggID) {
				g.held = append(g.held, *t)
			}
			return
		}
	}
	if st.last != 0 && t.AggID > st.last+1 {
		st.gap = &gap{from: st.last + 1, to: t.AggID - 1, since: math.MinInt64, held: []parse.Trade{*t}}
		s.gaps = append(s.gaps, t.Symbol)
		s.l.stats.gapsOpened.Add(1)
		return
	}
	if t.AggID <= st.last {
		// A duplicate (a repeated frame, the overlap of a rotation, a fill that
		// ran past the stream): already handed over.
		s.l.stats.duplicates.Add(1)
		return
	}
	st.last, st.lastTime = t.AggID, t.TradeTime
	s.f.Trade(t)
}

// track starts following newly subscribed symbols: one listed while running gets
// an anchor at once (it may have traded before the subscription took effect;
// with ack, once that SUBSCRIBE is answered); any other is followed from now.
// With probe (after a reconnect) it opens an open-ended gap for every other
// symbol: REST tells what was missed while disconnected, even if the symbol is
// quiet now, from its last trade or, if it sent none yet, from when it was
// first followed.
func (s *slot) track(probe bool, ack int64) {
	table := s.l.table.Load()
	listings := s.takeListings()
	now := s.l.Clock()
	for sym := range s.subscribed {
		i, ok := table.Lookup([]byte(sym))
		if !ok {
			continue
		}
		st := s.state(i)
		since, listed := listings[sym]
		if st.gap != nil {
			continue
		}
		switch {
		case listed && st.last == 0:
			st.tracked, st.since = true, since
			s.openAnchor(i, ack)
		case !st.tracked:
			st.tracked, st.since = true, now
		case !probe:
		case st.last != 0:
			st.gap = &gap{from: st.last + 1, to: math.MaxInt64, probe: true, since: math.MinInt64}
			s.gaps = append(s.gaps, i)
		default:
			s.openAnchor(i, 0)
		}
	}
}

// probeRecent, when the connection has been silent for Stale, opens a probe for
// every symbol that traded shortly before the silence (within a minute, or
// 2 x Stale, of the newest trade the connection delivered): a trade lost in
// flight at the end of a burst (a stalled predecessor read past the rotation
// overlap, a dropped frame) is found though no later trade reveals the gap. Each
// symbol is probed once per last trade, so a silent connection costs one REST
// request per recently active symbol.
func (s *slot) probeRecent() {
	table := s.l.table.Load()
	window := max(2*s.l.cfg.Stale, time.Minute).Milliseconds()
	newest := int64(math.MinInt64)
	for sym := range s.subscribed {
		if i, ok := table.Lookup([]byte(sym)); ok {
			newest = max(newest, s.state(i).lastTime)
		}
	}
	for sym := range s.subscribed {
		i, ok := table.Lookup([]byte(sym))
		if !ok {
			continue
		}
		st := s.state(i)
		if st.gap != nil || st.last == 0 || st.probed == st.last || st.lastTime < newest-window {
			continue
		}
		st.probed = st.last
		st.gap = &gap{from: st.last + 1, to: math.MaxInt64, probe: true, since: math.MinInt64}
		s.gaps = append(s.gaps, i)
	}
}

// openAnchor opens an anchor for a symbol that has sent no trade yet, unless the
// time since when it is followed is unknown (the exchange clock was never read).
func (s *slot) openAnchor(symbol uint32, ack int64) {
	st := s.state(symbol)
	if st.since == math.MinInt64 {
		return
	}
	st.gap = &gap{from: 0, to: math.MaxInt64, probe: true, anchor: true, since: st.since, ack: ack}
	s.gaps = append(s.gaps, symbol)
}

// closeGap ends a symbol's gap and hands over the trades held behind it.
func (s *slot) closeGap(symbol uint32) {
	st := s.state(symbol)
	held := st.gap.held
	st.gap = nil
	s.gaps = slices.DeleteFunc(s.gaps, func(x uint32) bool { return x == symbol })
	for i := range held {
		s.trade(&held[i])
	}
}

// flush publishes what was decoded, holding the watermark at the oldest gap, or,
// while disconnected, at the last frame heard: klines do not close over trades
// that are still to come from REST. It never holds more than MaxHold behind the
// exchange clock.
func (s *slot) flush() {
	hold := int64(math.MaxInt64)
	if s.down {
		hold = s.heardAt
	}
	for _, sym := range s.gaps {
		st := &s.syms[sym]
		hold = min(hold, max(st.lastTime, st.gap.since))
	}
	if hold != math.MaxInt64 {
		if now := s.l.Clock(); now != math.MinInt64 {
			hold = max(hold, now-s.l.cfg.MaxHold.Milliseconds())
		}
	}
	s.f.Hold(hold)
	s.f.Flush()
}

// fills sends due fill requests and applies the results that came back.
func (s *slot) fills() {
	for {
		select {
		case r := <-s.results:
			s.filled(r)
			continue
		default:
		}
		break
	}
	now := time.Now()
	table := s.l.table.Load()
	for _, sym := range s.gaps {
		g := s.syms[sym].gap
		if g.inFlight || now.Before(g.retryAt) {
			continue
		}
		if g.ack != 0 {
			if _, waiting := s.pending[g.ack]; waiting {
				continue // the subscription may not be in effect yet
			}
			g.ack = 0
		}
		req := fillRequest{slot: s, symbol: sym, name: table.Name(sym), from: g.from, to: g.to, anchor: g.anchor, since: g.since}
		queue := s.l.fills
		if g.to == math.MaxInt64 || g.anchor {
			queue = s.l.probes
		}
		select {
		case queue <- req:
			g.inFlight = true
		default: // the fillers are busy; next poll
		}
	}
}

// filled applies a fill: the trades of the gap, then the held ones.
func (s *slot) filled(r fillResult) {
	st := s.state(r.req.symbol)
	g := st.gap
	if g == nil || g.from != r.req.from {
		return // an old request (the gap was given up or the symbol delisted)
	}
	g.inFlight = false
	if g.anchor {
		s.anchored(r)
		return
	}
	for i := range r.trades {
		t := &r.trades[i]
		if t.AggID < g.from || t.AggID > g.to {
			continue
		}
		s.f.Trade(t)
		st.last, st.lastTime = t.AggID, t.TradeTime
		g.from = t.AggID + 1
		s.l.stats.tradesFilled.Add(1)
	}
	if g.from <= g.to && g.to != math.MaxInt64 {
		g.tries++
		if g.tries < s.l.cfg.FillTries {
			g.retryAt = time.Now().Add(time.Duration(g.tries) * 200 * time.Millisecond)
			if r.err != nil {
				s.log.Warn("cannot fill a gap yet; retrying", zap.String("symbol", r.req.name), zap.Int64("from", g.from), zap.Int64("to", g.to), zap.Error(r.err))
			}
			return
		}
		// Loudly: these trades are lost for klagg, and the klines say so.
		missing := g.to - g.from + 1
		s.l.stats.gapsUnfillable.Add(1)
		s.l.stats.tradesUnfillable.Add(uint64(missing))
		until := st.lastTime
		if len(g.held) > 0 {
			until = g.held[0].TradeTime
		}
		s.log.Error("gap cannot be filled: trades lost, klines flagged",
			zap.String("symbol", r.req.name), zap.Int64("from_id", g.from), zap.Int64("to_id", g.to),
			zap.Int64("missing", missing), zap.Error(r.err))
		s.l.p.MarkGap(r.req.symbol, st.lastTime, until)
		st.last = g.to
	} else if r.err != nil && g.to == math.MaxInt64 {
		g.retryAt = time.Now().Add(time.Second) // a probe that failed: ask again
		return
	} else if !g.probe || len(r.trades) > 0 {
		s.l.stats.gapsFilled.Add(1)
	}
	s.closeGap(r.req.symbol)
}

// anchored applies an anchor's result: the trades made since the symbol is
// followed, up to the first one the stream delivered.
func (s *slot) anchored(r fillResult) {
	st := s.state(r.req.symbol)
	g := st.gap
	if r.err != nil {
		g.retryAt = time.Now().Add(time.Second)
		s.log.Warn("cannot read a new symbol's first trades yet; retrying", zap.String("symbol", r.req.name), zap.Error(r.err))
		return
	}
	g.anchor = false
	for i := range r.trades {
		t := &r.trades[i]
		if t.AggID > g.to {
			break
		}
		if t.AggID <= st.last {
			continue
		}
		s.f.Trade(t)
		st.last, st.lastTime = t.AggID, t.TradeTime
		s.l.stats.tradesFilled.Add(1)
	}
	if st.last != 0 {
		s.l.stats.gapsFilled.Add(1)
	}
	if st.last == 0 || g.to == math.MaxInt64 || st.last >= g.to {
		// Nothing traded before the stream's first trade, or nothing more is
		// known: from here on the ids are checked as they come.
		s.closeGap(r.req.symbol)
		return
	}
	// REST did not serve everything before the stream's first trade yet.
	g.from, g.probe = st.last+1, false
}

// follow makes the symbols' wanted flags match the subscriptions: trades of a
// symbol no longer subscribed are dropped from then on, its pending gap is given
// up, and its shard is told it was delisted.
func (s *slot) follow() {
	table := s.l.table.Load()
	for sym := range s.subscribed {
		if i, ok := table.Lookup([]byte(sym)); ok {
			s.state(i).wanted = true
		}
	}
	for i := range s.syms {
		st := &s.syms[i]
		if !st.wanted || s.subscribed[table.Name(uint32(i))] {
			continue
		}
		st.wanted = false
		if st.gap != nil {
			st.gap = nil
			s.gaps = slices.DeleteFunc(s.gaps, func(x uint32) bool { return x == uint32(i) })
		}
		s.l.p.Retire(uint32(i))
	}
}

// resubscribe brings the connection's subscriptions to the wanted set.
func (s *slot) resubscribe(conn *exchange.Conn) error {
	s.changed.Store(false)
	want := s.streams()
	wantSet := map[string]bool{}
	var add, remove []string
	for _, sym := range want {
		wantSet[sym] = true
		if !s.subscribed[sym] {
			add = append(add, sym)
		}
	}
	for sym := range s.subscribed {
		if !wantSet[sym] {
			remove = append(remove, sym)
		}
	}
	slices.Sort(remove)
	for _, sym := range add {
		s.subscribed[sym] = true
	}
	for _, sym := range remove {
		delete(s.subscribed, sym)
	}
	s.follow()
	if err := s.send(conn, "SUBSCRIBE", add); err != nil {
		return err
	}
	if len(add) > 0 {
		s.track(false, s.nextID)
	}
	return s.send(conn, "UNSUBSCRIBE", remove)
}

// send writes SUBSCRIBE or UNSUBSCRIBE requests for symbols, 100 streams each; the
// connection keeps them under Binance's message rate.
func (s *slot) send(conn *exchange.Conn, method string, symbols []string) error {
	for len(symbols) > 0 {
		n := min(len(symbols), 100)
		streams := make([]string, n)
		for i, sym := range symbols[:n] {
			streams[i] = exchange.StreamName(sym)
		}
		s.nextID++
		if err := conn.WriteText(exchange.SubscribeMessage(nil, method, s.nextID, streams)); err != nil {
			return err
		}
		s.pending[s.nextID] = time.Now()
		symbols = symbols[n:]
	}
	return nil
}

// rotate opens the successor of conn with everything wanted now, keeps reading
// conn for the overlap and then closes it. It returns nil if the successor could
// not be opened (conn stays in use).
func (s *slot) rotate(ctx context.Context, conn *exchange.Conn) *exchange.Conn {
	symbols := s.streams()
	s.changed.Store(false)
	next, err := s.dial(ctx, symbols, false)
	if err != nil {
		s.log.Warn("cannot open the successor of a connection; keeping the old one", zap.Error(err))
		return nil
	}
	// A read of the old connection must not outlast the overlap (see serve).
	end := time.AfterFunc(s.l.cfg.Overlap+s.l.cfg.Poll, func() { conn.Close() })
	defer end.Stop()
	deadline := time.Now().Add(s.l.cfg.Overlap)
	for left := time.Until(deadline); left > 0; left = time.Until(deadline) {
		ok, err := conn.Poll(min(left, s.l.cfg.Poll))
		if err != nil {
			break
		}
		if ok {
			frame, err := conn.Read(nil)
			if err != nil {
				break
			}
			s.frame(frame)
		}
	}
	conn.Close()
	s.shutdown = false
	s.l.stats.rotations.Add(1)
	s.flush()
	return next
}

// staleCheck is a question for REST: did symbol trade beyond the ids the slot
// knows of, after the last frame the connection delivered (heardAt, exchange time)?
type staleCheck struct {
	symbol         uint32
	name           string
	known, heardAt int64
}

// staleQuestion picks the connection's most recently active symbol to ask about.
func (s *slot) staleQuestion(heardAt int64) (staleCheck, bool) {
	table := s.l.table.Load()
	var best uint32
	bestTime, found := int64(math.MinInt64), false
	for sym := range s.subscribed {
		if i, ok := table.Lookup([]byte(sym)); ok {
			if t := s.state(i).lastTime; !found || t > bestTime {
				best, bestTime, found = i, t, true
			}
		}
	}
	if !found {
		return staleCheck{}, false
	}
	st := s.state(best)
	known := st.last
	if g := st.gap; g != nil {
		if g.to != math.MaxInt64 {
			known = max(known, g.to)
		}
		if n := len(g.held); n > 0 {
			known = max(known, g.held[n-1].AggID)
		}
	}
	return staleCheck{symbol: best, name: table.Name(best), known: known, heardAt: heardAt}, true
}

// stale asks REST the question of q; true means the connection is dead though
// open. It runs on its own goroutine: a REST call may wait seconds (weight, 429,
// a ban), and the slot must keep reading meanwhile (pings need pongs).
func (l *Live) stale(ctx context.Context, q staleCheck) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	trades, err := l.client.AggTrades(ctx, q.name, q.symbol, -1, 1, nil)
	if err != nil || len(trades) == 0 {
		return false
	}
	t := trades[len(trades)-1]
	return t.AggID > q.known && t.TradeTime > q.heardAt
}
