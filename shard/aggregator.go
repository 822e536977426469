package shard

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/klagg/klagg/parse"
)

// Config configures an Aggregator.
type Config struct {
	Intervals []Interval // default BinanceIntervals(false)
	Grace     int64      // ms after close_time before a kline closes by watermark; default 2000
	History   int        // closed klines kept per (symbol, interval) for late corrections; default 2
	// Lateness, in ms, raises an interval's history to cover at least this much time
	// (ceil(Lateness/length)+1 klines, at most 1024): with 1 s klines a History of 2
	// keeps only 2 s of corrections, with 1M two months. 0 leaves History as it is.
	Lateness int64
	// MaxEmpty, in ms, bounds the empty klines of a silent symbol: once it has not
	// traded for MaxEmpty, the empty kline closing past that gets FlagQuiet and
	// no more follow until it trades again (Counters.QuietSkipped). 0: no bound,
	// as Binance (every period after a symbol's first trade yields a kline).
	MaxEmpty int64
}

// DefaultConfig returns the futures intervals, a 2 s grace and 2 klines of history.
func DefaultConfig() Config {
	return Config{Intervals: BinanceIntervals(false), Grace: 2000, History: 2}
}

// Counters are the Aggregator's running totals. Late and TooLate count
// (trade, interval) pairs: a trade can be on time for 1h and late for 1s;
// TooLateTrades counts the trades that missed at least one interval.
type Counters struct {
	Trades          uint64 // trades accepted (not duplicates): Trades - TooLateTrades were applied to every interval
	Duplicates      uint64 // trades skipped because their AggID was applied already
	Late            uint64 // late trades applied to a closed kline in history (corrections)
	TooLate         uint64 // late trades older than the history (or than the symbol's first kline): dropped
	TooLateTrades   uint64 // trades dropped from at least one interval as too late (each once)
	IDGaps          uint64 // trades whose AggID does not follow the previous one
	RunMerges       uint64 // id ranges joined to bound memory (ids between count as applied)
	Overflows       uint64 // klines that got FlagOverflow
	ClosedKlines    uint64 // klines closed (corrections excluded)
	EmptyKlines     uint64 // of which empty
	QuietSkipped    uint64 // empty klines not emitted: their symbol was silent past MaxEmpty
	EarlyCloses     uint64 // klines closed ahead of the watermark because a trade ran past the window
	Updates         uint64 // Update calls accepted
	UpdatesDeferred uint64 // Update calls refused (kline kept dirty)
	Commands        uint64 // in-band commands executed
	BadCommands     uint64 // in-band records with an unknown Op
	Marks           uint64 // flag-only events for klines no longer kept
}

// Add adds o's counts to c (the pipeline sums its shards).
func (c *Counters) Add(o Counters) {
	c.Trades += o.Trades
	c.Duplicates += o.Duplicates
	c.Late += o.Late
	c.TooLate += o.TooLate
	c.TooLateTrades += o.TooLateTrades
	c.IDGaps += o.IDGaps
	c.RunMerges += o.RunMerges
	c.QuietSkipped += o.QuietSkipped
	c.Commands += o.Commands
	c.BadCommands += o.BadCommands
	c.Marks += o.Marks
	c.Overflows += o.Overflows
	c.ClosedKlines += o.ClosedKlines
	c.EmptyKlines += o.EmptyKlines
	c.EarlyCloses += o.EarlyCloses
	c.Updates += o.Updates
	c.UpdatesDeferred += o.UpdatesDeferred
}

// entry is one kline slot of a window or of the history ring.
type entry struct {
	k      Kline
	period int64 // period number of k; meaningful when live
	live   bool
	dirty  bool // open, and changed since its last update
}

// series is the state of one (symbol, interval).
type series struct {
	// cur caches the entry of the newest-touched open period and its [open,
	// next) range so that the common trade needs no division and no calendar.
	curOpen, curNext int64
	cur              *entry

	window    []entry // open periods [next, next+len(window)), entry = period mod len
	history   []entry // closed periods [next-len(history), next), entry = period mod len
	next      int64   // first period of this symbol not closed yet
	newest    int64   // newest period with trades; an open one iff >= next
	first     int64   // the symbol's first period: no kline precedes it
	lateMark  int64   // last period marked FlagLate (one mark per kline)
	lastClose parse.Decimal
}

type symbolState struct {
	ids      idRuns
	sym      uint32
	dirty    bool // in Aggregator.dirty, updates pending from series[updFrom]
	retired  bool
	updFrom  int
	hold     int64 // klines with CloseTime >= hold stay open (NoHold: none)
	lastTime int64 // largest trade time applied
	series   []series
	// resume, for a restored symbol until its trades pass them, is each
	// series' last aggTrade id applied before the restart (Restore).
	resume    []int64
	resumeMax int64
}

// intervalState is the watermark state of one interval, shared by all symbols.
type intervalState struct {
	iv       Interval
	window   int   // window slots per symbol
	history  int   // closed klines kept per symbol
	closed   int64 // every period < closed is closed for every symbol
	nextOpen int64 // open time of period closed+1: the watermark limit that closes period `closed`
}

// Aggregator turns trades into klines for the symbols of one shard.
//
// An Aggregator is owned by a single goroutine: none of its methods may be
// called concurrently, and it takes no locks. The Emitter is called
// synchronously from Apply, Advance, Flush and FlushUpdates on that goroutine.
type Aggregator struct {
	cfg     Config
	out     Emitter
	ivs     []intervalState
	symbols []*symbolState // indexed by parse.Trade.Symbol
	live    int            // non-nil symbols
	retired int            // retired symbols not freed yet
	dirty   []uint32       // symbols with updates pending
	slab    int            // entries per symbol
	c       Counters

	// Rarely used, by symbol: holds and partial starts waiting for a first
	// trade (0: none), and what is left of retired symbols.
	holds    []int64
	partials []int64
	tombs    map[uint32]*tomb
}

// New validates cfg (1..255 distinct intervals, Grace >= 0, History >= 0) and
// returns an Aggregator emitting to out. A zero cfg.Intervals selects
// BinanceIntervals(false).
func New(cfg Config, out Emitter) (*Aggregator, error) {
	if cfg.Intervals == nil {
		cfg.Intervals = BinanceIntervals(false)
	}
	if out == nil {
		return nil, fmt.Errorf("cannot create aggregator: nil Emitter: %w", ErrConfig)
	}
	if n := len(cfg.Intervals); n < 1 || n > math.MaxUint8 {
		return nil, fmt.Errorf("cannot create aggregator: %d intervals, want 1..255: %w", n, ErrConfig)
	}
	if cfg.Grace < 0 || cfg.Grace > 100*365*msDay {
		return nil, fmt.Errorf("cannot create aggregator: grace %d ms out of range: %w", cfg.Grace, ErrConfig)
	}
	if cfg.History < 0 || cfg.History > 1<<16 {
		return nil, fmt.Errorf("cannot create aggregator: history %d out of range: %w", cfg.History, ErrConfig)
	}
	if cfg.Lateness < 0 || cfg.Lateness > 100*365*msDay {
		return nil, fmt.Errorf("cannot create aggregator: lateness %d ms out of range: %w", cfg.Lateness, ErrConfig)
	}
	if cfg.MaxEmpty < 0 {
		return nil, fmt.Errorf("cannot create aggregator: max empty %d ms out of range: %w", cfg.MaxEmpty, ErrConfig)
	}
	a := &Aggregator{cfg: cfg, out: out, tombs: map[uint32]*tomb{}}
	a.cfg.Intervals = append([]Interval(nil), cfg.Intervals...)
	for i, iv := range a.cfg.Intervals {
		if !iv.valid() {
			return nil, fmt.Errorf("cannot create aggregator: interval %q: %w", iv.Name, ErrInterval)
		}
		for _, o := range a.cfg.Intervals[:i] {
			if o.same(iv) {
				return nil, fmt.Errorf("cannot create aggregator: %s and %s: %w", o.Name, iv.Name, ErrDuplicate)
			}
		}
		length := iv.Millis
		if iv.Months > 0 {
			length = minMonth * int64(iv.Months)
		}
		// Periods open at once: those closing within Grace of the watermark,
		// the current one, and one spare for trades running ahead of it.
		w := int((cfg.Grace+length-1)/length) + 2
		h := cfg.History
		if cfg.Lateness > 0 {
			h = max(h, min(int((cfg.Lateness+length-1)/length)+1, 1024))
		}
		a.ivs = append(a.ivs, intervalState{iv: iv, window: w, history: h, closed: math.MinInt64, nextOpen: math.MinInt64})
		a.slab += w + h
	}
	return a, nil
}

// Config returns the configuration in use.
func (a *Aggregator) Config() Config { return a.cfg }

// Counters returns the running totals.
func (a *Aggregator) Counters() Counters { return a.c }

// Apply applies one trade, or executes an in-band command (t.Control != 0, see
// Op). It allocates only for a symbol's first trade.
func (a *Aggregator) Apply(t *parse.Trade) {
	if t.Control != 0 {
		a.control(t)
		return
	}
	if int(t.Symbol) >= len(a.symbols) || a.symbols[t.Symbol] == nil {
		if len(a.tombs) > 0 && a.applyTomb(t) {
			return
		}
		a.applyFirst(t)
		return
	}
	st := a.symbols[t.Symbol]
	if t.AggID != st.ids.cur.hi+1 {
		added, merged := st.ids.addSlow(t.AggID)
		if !added {
			a.c.Duplicates++
			return
		}
		if merged {
			a.c.RunMerges++
		}
		a.c.IDGaps++
	} else {
		st.ids.add(t.AggID)
	}
	if st.retired {
		a.relist(st, t.TradeTime)
	}
	a.c.Trades++
	if st.resume != nil {
		a.applyResumed(st, t)
		return
	}
	late := false
	quote := Mul64(uint64(t.Price), uint64(t.Qty))
	price, qty, cnt := t.Price, uint64(t.Qty), t.Count()
	// Taker-buy sums add zero for taker sells: branch-free, since the side is
	// unpredictable.
	mask := uint64(0)
	if !t.BuyerMaker {
		mask = ^uint64(0)
	}
	tbQty, tbQuote := qty&mask, Uint128{Hi: quote.Hi & mask, Lo: quote.Lo & mask}
	for i := range st.series {
		s := &st.series[i]
		if t.TradeTime < s.curOpen || t.TradeTime >= s.curNext {
			late = a.applySlow(st, s, i, t, quote) || late
			continue
		}
		// Fast path, inlined by hand: the cached kline already has trades.
		s.cur.dirty = true
		k := &s.cur.k
		k.High = max(k.High, price)
		k.Low = min(k.Low, price)
		k.Close = price
		k.LastAggID, k.LastTradeID = t.AggID, t.LastID
		k.Count += cnt
		var c1, c2, c3, c4 uint64
		k.Volume.Lo, c1 = bits.Add64(k.Volume.Lo, qty, 0)
		k.Volume.Hi, c1 = bits.Add64(k.Volume.Hi, 0, c1)
		k.QuoteVolume.Lo, c2 = bits.Add64(k.QuoteVolume.Lo, quote.Lo, 0)
		k.QuoteVolume.Hi, c2 = bits.Add64(k.QuoteVolume.Hi, quote.Hi, c2)
		k.TakerBuyVolume.Lo, c3 = bits.Add64(k.TakerBuyVolume.Lo, tbQty, 0)
		k.TakerBuyVolume.Hi, c3 = bits.Add64(k.TakerBuyVolume.Hi, 0, c3)
		k.TakerBuyQuoteVolume.Lo, c4 = bits.Add64(k.TakerBuyQuoteVolume.Lo, tbQuote.Lo, 0)
		k.TakerBuyQuoteVolume.Hi, c4 = bits.Add64(k.TakerBuyQuoteVolume.Hi, tbQuote.Hi, c4)
		if c1|c2|c3|c4 != 0 || k.Count < 0 {
			a.overflow(k, c1 != 0, c2 != 0, c3 != 0, c4 != 0)
		}
		if invariants {
			checkKline(k)
		}
	}
	// After the intervals: the empty klines a trade far ahead closes see the
	// silence before it.
	st.lastTime = max(st.lastTime, t.TradeTime)
	if late {
		a.c.TooLateTrades++
		a.out.Dropped(t, ErrTooLate)
	}
	a.markDirty(st, t.Symbol)
}

// relist starts a retired symbol again that trades before its state was
// freed: series whose klines all closed skip to the trade's period, with no
// empty klines for the time it was delisted.
func (a *Aggregator) relist(st *symbolState, at int64) {
	st.retired = false
	a.retired--
	for i := range st.series {
		if s := &st.series[i]; s.newest < s.next {
			s.next = max(s.next, a.ivs[i].iv.Period(at))
		}
	}
}

func (a *Aggregator) markDirty(st *symbolState, sym uint32) {
	st.updFrom = 0
	if !st.dirty {
		st.dirty = true
		a.dirty = append(a.dirty, sym)
	}
}

// add applies t to k (open or closed) and reports overflow.
func (a *Aggregator) add(k *Kline, t *parse.Trade, quote Uint128) {
	p := t.Price
	if k.FirstAggID < 0 {
		k.Open, k.High, k.Low = p, p, p
		k.FirstAggID, k.FirstTradeID = t.AggID, t.FirstID
		k.Flags &^= FlagEmpty
	} else {
		k.High = max(k.High, p)
		k.Low = min(k.Low, p)
	}
	k.Close = p
	k.LastAggID, k.LastTradeID = t.AggID, t.LastID
	k.Count += t.Count()
	var o1, o2, o3, o4 bool
	k.Volume, o1 = k.Volume.Add64(uint64(t.Qty))
	k.QuoteVolume, o2 = k.QuoteVolume.Add(quote)
	if !t.BuyerMaker {
		k.TakerBuyVolume, o3 = k.TakerBuyVolume.Add64(uint64(t.Qty))
		k.TakerBuyQuoteVolume, o4 = k.TakerBuyQuoteVolume.Add(quote)
	}
	if o1 || o2 || o3 || o4 || k.Count < 0 {
		a.overflow(k, o1, o2, o3, o4)
	}
	if invariants {
		checkKline(k)
	}
}

// overflow saturates the overflowed sums; once a kline overflowed, all its
// sums stay saturated-or-suspect and the flag stays.
func (a *Aggregator) overflow(k *Kline, o1, o2, o3, o4 bool) {
	if o1 {
		k.Volume = MaxUint128
	}
	if o2 {
		k.QuoteVolume = MaxUint128
	}
	if o3 {
		k.TakerBuyVolume = MaxUint128
	}
	if o4 {
		k.TakerBuyQuoteVolume = MaxUint128
	}
	if k.Count < 0 { // each trade adds less than 2^40 (parse's bound), so a wrap turns negative
		k.Count = math.MaxInt64
	}
	// A saturated sum overflows again on any later non-zero add, and is
	// saturated again: it never wraps back to a small value.
	if k.Flags&FlagOverflow != 0 {
		return
	}
	k.Flags |= FlagOverflow
	a.c.Overflows++
}

func checkKline(k *Kline) {
	if k.FirstAggID < 0 {
		if k.Count != 0 || !k.Volume.IsZero() || !k.QuoteVolume.IsZero() {
			panic(fmt.Sprintf("BUG: kline without trades has volume: %+v", *k))
		}
		return
	}
	if k.High < k.Open || k.High < k.Close || k.Low > k.Open || k.Low > k.Close {
		panic(fmt.Sprintf("BUG: kline OHLC inconsistent: %+v", *k))
	}
	if k.FirstAggID > k.LastAggID || k.TakerBuyVolume.Cmp(k.Volume) > 0 || k.TakerBuyQuoteVolume.Cmp(k.QuoteVolume) > 0 {
		panic(fmt.Sprintf("BUG: kline sums inconsistent: %+v", *k))
	}
}

func (a *Aggregator) applyFirst(t *parse.Trade) {
	sym := t.Symbol
	if int(sym) >= len(a.symbols) {
		n := max(int(sym)+1, 2*len(a.symbols), 16)
		grown := make([]*symbolState, n)
		copy(grown, a.symbols)
		a.symbols = grown
	}
	st := a.newState(sym)
	st.ids, st.lastTime = newIDRuns(t.AggID), t.TradeTime
	partialBefore := int64(math.MinInt64)
	if int(sym) < len(a.partials) && a.partials[sym] != 0 {
		partialBefore, a.partials[sym] = a.partials[sym], 0
	}
	a.install(st)
	a.c.Trades++
	quote := Mul64(uint64(t.Price), uint64(t.Qty))
	for i := range st.series {
		s := &st.series[i]
		ivs := &a.ivs[i]
		p := ivs.iv.Period(t.TradeTime)
		s.next, s.first = p, p
		a.applySlow(st, s, i, t, quote)
		if ivs.iv.periodOpen(p) < partialBefore {
			s.cur.k.Flags |= FlagPartial
		}
		// The interval's watermark is already past this period: close it now.
		if p < ivs.closed {
			a.closeThrough(st, s, i, ivs.closed-1)
		}
	}
	a.markDirty(st, sym)
}

// applySlow handles a trade outside the cached period: another open period,
// a period beyond the window, or a closed one. It reports a trade too late
// for this interval.
func (a *Aggregator) applySlow(st *symbolState, s *series, i int, t *parse.Trade, quote Uint128) (tooLate bool) {
	ivs := &a.ivs[i]
	p := ivs.iv.Period(t.TradeTime)
	if s.first == math.MinInt64 {
		// A series that starts with this trade while its symbol had others
		// before (restored from a store that did not keep this interval): its
		// first kline misses those.
		s.next, s.first = p, p
		a.applySlow(st, s, i, t, quote)
		s.cur.k.Flags |= FlagPartial
		return false
	}
	if p < s.next {
		return !a.applyLate(st, s, i, p, t, quote)
	}
	w := int64(len(s.window))
	if p >= s.next+w {
		a.c.EarlyCloses += uint64(p - w + 1 - s.next)
		a.closeForced(st, s, i, p-w)
	}
	e := &s.window[floorMod(p, w)]
	if !e.live {
		a.initEntry(e, st, i, p)
	} else if e.period != p {
		panic(fmt.Sprintf("BUG: window slot of period %d holds period %d (next %d)", p, e.period, s.next))
	}
	a.add(&e.k, t, quote)
	e.dirty = true
	s.newest = max(s.newest, p)
	s.cur, s.curOpen, s.curNext = e, e.k.OpenTime, e.k.CloseTime+1
	return false
}

func (a *Aggregator) initEntry(e *entry, st *symbolState, i int, p int64) {
	iv := &a.ivs[i].iv
	open := iv.periodOpen(p)
	e.k = Kline{
		Symbol:       st.sym,
		Interval:     uint8(i),
		OpenTime:     open,
		CloseTime:    iv.periodOpen(p+1) - 1,
		FirstTradeID: -1, LastTradeID: -1, FirstAggID: -1, LastAggID: -1,
	}
	e.period = p
	e.live, e.dirty = true, false
}

// applyLate applies a trade whose period p is already closed for this symbol;
// it reports false if the kline is no longer kept (the trade is too late for
// this interval: counted, and the kline marked FlagLate once).
func (a *Aggregator) applyLate(st *symbolState, s *series, i int, p int64, t *parse.Trade, quote Uint128) bool {
	h := int64(len(s.history))
	if p < s.first { // before the symbol's first kline: no kline to correct
		a.c.TooLate++
		return false
	}
	if h == 0 || p < s.next-h {
		a.c.TooLate++
		if p != s.lateMark {
			s.lateMark = p
			a.mark(st.sym, i, p, FlagLate)
		}
		return false
	}
	e := &s.history[floorMod(p, h)]
	if !e.live || e.period != p {
		// A period skipped, not closed (a quiet or delisted symbol): no kline
		// was written for it, none to correct.
		a.c.TooLate++
		return false
	}
	a.c.Late++
	oldClose := e.k.Close
	a.add(&e.k, t, quote)
	e.k.Flags |= FlagCorrected
	a.out.Closed(&e.k)
	if e.k.Close == oldClose {
		return true
	}
	// Empty successors copy the previous close.
	c := e.k.Close
	for q := p + 1; q < s.next; q++ {
		e := &s.history[floorMod(q, h)]
		if !e.live || e.period != q || e.k.FirstAggID >= 0 {
			return true
		}
		e.k.Open, e.k.High, e.k.Low, e.k.Close = c, c, c, c
		e.k.Flags |= FlagCorrected
		a.out.Closed(&e.k)
	}
	s.lastClose = c
	return true
}

// closeThrough closes the periods of one series up to and including q, or up
// to the symbol's hold.
func (a *Aggregator) closeThrough(st *symbolState, s *series, i int, q int64) {
	if st.hold != NoHold {
		q = min(q, a.ivs[i].iv.Period(st.hold)-1)
	}
	a.closeForced(st, s, i, q)
}

// closeForced closes the periods of one series up to and including q, holds
// or not.
func (a *Aggregator) closeForced(st *symbolState, s *series, i int, q int64) {
	if s.first == math.MinInt64 {
		return // not started: its first trade is still to come
	}
	for s.next <= q {
		if st.retired && s.newest < s.next {
			// Delisted and no traded period left: no more empty klines.
			for j := range s.window {
				s.window[j].live = false
			}
			s.cur, s.curOpen, s.curNext = nil, math.MaxInt64, math.MinInt64
			s.next = q + 1
			return
		}
		a.closeNext(st, s, i)
	}
}

// closeNext closes period s.next of one series and emits it.
func (a *Aggregator) closeNext(st *symbolState, s *series, i int) {
	q := s.next
	e := &s.window[floorMod(q, int64(len(s.window)))]
	if !e.live {
		a.initEntry(e, st, i, q)
	} else if e.period != q {
		panic(fmt.Sprintf("BUG: closing period %d but its window slot holds period %d", q, e.period))
	}
	if e.k.FirstAggID < 0 {
		if a.cfg.MaxEmpty > 0 && e.k.OpenTime-st.lastTime > a.cfg.MaxEmpty {
			// Silent past the bound: the kline before was the last (FlagQuiet).
			e.live = false
			if s.cur == e {
				s.cur, s.curOpen, s.curNext = nil, math.MaxInt64, math.MinInt64
			}
			s.next = q + 1
			a.c.QuietSkipped++
			return
		}
		c := s.lastClose
		e.k.Open, e.k.High, e.k.Low, e.k.Close = c, c, c, c
		e.k.Flags |= FlagEmpty
		if a.cfg.MaxEmpty > 0 && e.k.CloseTime+1-st.lastTime > a.cfg.MaxEmpty {
			e.k.Flags |= FlagQuiet
		}
		a.c.EmptyKlines++
	}
	e.k.Closed = true
	e.live, e.dirty = false, false
	if s.cur == e {
		s.cur, s.curOpen, s.curNext = nil, math.MaxInt64, math.MinInt64
	}
	s.lastClose = e.k.Close
	s.next = q + 1
	a.c.ClosedKlines++
	out := &e.k
	if h := int64(len(s.history)); h > 0 {
		he := &s.history[floorMod(q, h)]
		he.k = e.k
		he.period, he.live = q, true
		out = &he.k
	}
	if invariants {
		checkKline(out)
		for j := range s.window {
			if w := &s.window[j]; w.live && (w.period < s.next || w.period >= s.next+int64(len(s.window))) {
				panic(fmt.Sprintf("BUG: window holds period %d outside [%d, %d)", w.period, s.next, s.next+int64(len(s.window))))
			}
		}
	}
	a.out.Closed(out)
}

// Advance closes, for every symbol with state, every kline whose CloseTime +
// Grace < watermark, empty periods included, in open-time order per (symbol,
// interval). watermark is event time, never the wall clock. It costs
// O(intervals) when no interval boundary is crossed and does not allocate.
func (a *Aggregator) Advance(watermark int64) {
	if watermark < math.MinInt64+a.cfg.Grace {
		return
	}
	a.closeUpTo(watermark - a.cfg.Grace)
}

// Flush ends the input: it closes every kline with CloseTime <= watermark
// (no grace), holds excepted. With includeOpen it then also closes every
// still-open kline that has trades (and the empty periods before it): those
// klines are incomplete, their period not being over.
func (a *Aggregator) Flush(watermark int64, includeOpen bool) {
	limit := watermark
	if limit < math.MaxInt64 {
		limit++
	}
	a.closeUpTo(limit)
	if !includeOpen {
		return
	}
	for _, st := range a.symbols {
		if st == nil {
			continue
		}
		for i := range st.series {
			s := &st.series[i]
			if s.newest >= s.next {
				a.closeThrough(st, s, i, s.newest)
			}
		}
	}
	a.freeRetired()
}

// NextClose returns the smallest watermark at which Advance would close a
// kline of some interval (math.MaxInt64 when none will): an idle caller can
// sleep until then. Lifting a hold (OpHold) closes what it held at once.
func (a *Aggregator) NextClose() int64 {
	next := int64(math.MaxInt64)
	for i := range a.ivs {
		next = min(next, a.ivs[i].nextOpen)
	}
	if next == math.MinInt64 || next > math.MaxInt64-a.cfg.Grace {
		return next
	}
	return next + a.cfg.Grace
}

// closeUpTo closes every period q with open(q+1) <= limit.
func (a *Aggregator) closeUpTo(limit int64) {
	freed := false
	for i := range a.ivs {
		ivs := &a.ivs[i]
		if limit < ivs.nextOpen {
			continue
		}
		q := ivs.iv.Period(limit) - 1
		for _, st := range a.symbols {
			if st != nil {
				a.closeThrough(st, &st.series[i], i, q)
			}
		}
		ivs.closed = q + 1
		ivs.nextOpen = ivs.iv.periodOpen(q + 2)
		freed = true
	}
	if freed {
		a.freeRetired()
	}
}

// FlushUpdates emits, for each symbol with trades since its last update, every
// open kline that changed since (Closed == false), oldest first per interval:
// a period still in its grace time whose last trades came with the next
// period's first ones is sent too, so a store never holds a newer open kline
// while an older one's trades exist nowhere. When Update refuses one, it
// stops; the rest stays dirty for the next call.
func (a *Aggregator) FlushUpdates() {
	for j, sym := range a.dirty {
		st := a.symbols[sym]
		if st == nil || !st.dirty {
			continue
		}
		for ; st.updFrom < len(st.series); st.updFrom++ {
			s := &st.series[st.updFrom]
			if s.newest < s.next {
				continue
			}
			w := int64(len(s.window))
			for q := s.next; q <= s.newest; q++ {
				e := &s.window[floorMod(q, w)]
				if !e.live || e.period != q || !e.dirty {
					continue
				}
				if !a.out.Update(&e.k) {
					a.c.UpdatesDeferred++
					n := copy(a.dirty, a.dirty[j:])
					a.dirty = a.dirty[:n]
					return
				}
				e.dirty = false
				a.c.Updates++
			}
		}
		st.dirty = false
	}
	a.dirty = a.dirty[:0]
}

// Retire marks a symbol delisted, at once; see OpRetire for the in-band form.
func (a *Aggregator) Retire(symbol uint32) { a.retire(symbol) }

func (a *Aggregator) freeRetired() {
	if a.retired == 0 {
		return
	}
	for id, st := range a.symbols {
		if st == nil || !st.retired {
			continue
		}
		done := true
		for i := range st.series {
			if st.series[i].newest >= st.series[i].next {
				done = false
				break
			}
		}
		if done {
			tb := &tomb{ids: st.ids, written: math.MinInt64}
			for i := range st.series {
				tb.written = max(tb.written, a.ivs[i].iv.periodOpen(st.series[i].next))
			}
			a.tombs[uint32(id)] = tb
			a.symbols[id] = nil
			a.live--
			a.retired--
		}
	}
}

// MarkGap flags the symbol's klines overlapping trade times [from, to] at once;
// see OpMarkGap for the in-band form.
func (a *Aggregator) MarkGap(symbol uint32, from, to int64) { a.markGap(symbol, from, to) }
