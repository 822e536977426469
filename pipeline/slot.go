package pipeline

import (
	"context"
	"errors"
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
	wanted  map[string]bool // written by the manager, read by the slot goroutine
	changed atomic.Bool

	wake      chan struct{} // the manager changed wanted
	results   chan fillResult
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
}

// symState is what a slot knows of one symbol's aggTrade ids.
type symState struct {
	last     int64 // last aggTrade id handed over; 0: none yet
	lastTime int64 // its trade time
	wanted   bool
	gap      *gap
}

// gap is a range of aggTrade ids missing from the stream, and the trades held
// back behind it. A probe (after a reconnect) is a gap whose end is not known yet:
// to is math.MaxInt64 until the stream delivers the symbol's next trade.
type gap struct {
	from, to int64
	probe    bool
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
	}
	s.mu.Unlock()
	s.changed.Store(true)
	select {
	case s.wake <- struct{}{}:
	default:
	}
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
	for ctx.Err() == nil {
		symbols := s.streams()
		s.changed.Store(false)
		if len(symbols) == 0 {
			s.idle(ctx)
			continue
		}
		conn, err := s.dial(ctx, symbols)
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
		if ctx.Err() != nil {
			break
		}
		s.l.stats.reconnects.Add(1)
		wait := s.backoff.Next()
		s.log.Warn("connection lost; reconnecting", zap.Error(err), zap.Duration("retry_in", wait))
		s.idleFor(ctx, wait)
	}
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

// dial opens a combined-stream connection for symbols.
func (s *slot) dial(ctx context.Context, symbols []string) (*exchange.Conn, error) {
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
	if s.l.cfg.Probe {
		s.probe()
	}
	s.shutdown = false
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
			heard = time.Now()
			for n := 0; ; n++ {
				frame, err := conn.Read(nil)
				if err != nil {
					s.flush()
					return err
				}
				s.frame(frame)
				if conn.Buffered() == 0 || n == 1024 {
					break
				}
			}
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
			} else {
				// Try again later; a server that shuts down closes the old one,
				// and the reconnect path takes over.
				s.shutdown = false
				born = time.Now().Add(-cfg.Rotate + s.backoff.Next())
			}
		}
		if time.Since(heard) >= cfg.Stale {
			heard = time.Now()
			if s.stale(ctx) {
				s.l.stats.staleReplaced.Add(1)
				return errStale
			}
		}
	}
}

// frame handles one message of the stream.
func (s *slot) frame(frame []byte) {
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
		st.gap = &gap{from: st.last + 1, to: t.AggID - 1, held: []parse.Trade{*t}}
		s.gaps = append(s.gaps, t.Symbol)
		s.l.stats.gapsOpened.Add(1)
		return
	}
	if t.AggID > st.last { // else a duplicate: the shard counts it
		st.last, st.lastTime = t.AggID, t.TradeTime
	}
	s.f.Trade(t)
}

// probe opens an open-ended gap for every symbol that traded before a reconnect:
// REST tells what was missed while disconnected, even if the symbol is quiet now.
func (s *slot) probe() {
	table := s.l.table.Load()
	for sym := range s.subscribed {
		i, ok := table.Lookup([]byte(sym))
		if !ok {
			continue
		}
		st := s.state(i)
		if st.last == 0 || st.gap != nil {
			continue
		}
		st.gap = &gap{from: st.last + 1, to: math.MaxInt64, probe: true}
		s.gaps = append(s.gaps, i)
	}
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

// flush publishes what was decoded, holding the watermark at the oldest gap.
func (s *slot) flush() {
	hold := int64(math.MaxInt64)
	if len(s.gaps) > 0 {
		floor := s.l.Clock() - s.l.cfg.MaxHold.Milliseconds()
		for _, sym := range s.gaps {
			hold = min(hold, max(s.syms[sym].lastTime, floor))
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
		req := fillRequest{slot: s, symbol: sym, name: table.Name(sym), from: g.from, to: g.to}
		queue := s.l.fills
		if g.to == math.MaxInt64 {
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
	next, err := s.dial(ctx, symbols)
	if err != nil {
		s.log.Warn("cannot open the successor of a connection; keeping the old one", zap.Error(err))
		return nil
	}
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

// stale asks REST whether one of the connection's symbols traded after what the
// connection last delivered; if so the connection is dead though open.
func (s *slot) stale(ctx context.Context) bool {
	table := s.l.table.Load()
	var best uint32
	var bestLast int64 = -1
	for sym := range s.subscribed {
		if i, ok := table.Lookup([]byte(sym)); ok {
			if last := s.state(i).last; last > bestLast {
				best, bestLast = i, last
			}
		}
	}
	if bestLast < 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	from := bestLast + 1
	if bestLast == 0 {
		from = -1
	}
	trades, err := s.l.client.AggTrades(ctx, table.Name(best), best, from, 1, nil)
	if err != nil || len(trades) == 0 {
		return false
	}
	if bestLast == 0 {
		// Nothing received yet: stale if the symbol traded since the connection
		// should have delivered it.
		return trades[0].TradeTime > s.l.Clock()-s.l.cfg.Stale.Milliseconds()
	}
	s.log.Warn("connection silent while its symbols trade; replacing it", zap.String("symbol", table.Name(best)))
	return true
}
