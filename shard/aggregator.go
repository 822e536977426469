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
	// PromptClose closes a symbol's base kline as soon as one of its trades
	// falls in a later period, instead of at watermark + Grace: right when the
	// input delivers each symbol's trades in aggTrade id order, so a later
	// period's trade proves the earlier periods complete (a live feed, which
	// holds trades behind gaps). Quiet symbols still close by the watermark.
	PromptClose bool
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
	PromptCloses    uint64 // base klines closed by a later period's trade (PromptClose)
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
	c.PromptCloses += o.PromptCloses
	c.Updates += o.Updates
	c.UpdatesDeferred += o.UpdatesDeferred
}

// noPeriod marks a series not started yet (first) or no period (newest).
const noPeriod = math.MinInt64

// entry is one kline slot of a window or of the history ring. A parent's
// window entry is the accumulator of its closed children.
type entry struct {
	k      Kline
	period int64 // period number of k; meaningful when live
	live   bool
	dirty  bool // base: open, and changed since its last update
	folded bool // parent: some child (a kline, even empty) was folded in
}

// series is the state of one (symbol, interval).
type series struct {
	// cur caches the base's entry of the newest-touched open period and its
	// [open, next) range so that the common trade needs no division and no
	// calendar.
	curOpen, curNext int64
	cur              *entry

	window    []entry // open periods [next, next+len(window)), entry = period mod len
	history   []entry // closed periods [next-len(history), next), entry = period mod len
	next      int64   // first period of this symbol not closed yet
	newest    int64   // newest period with trades; an open one iff >= next (base)
	first     int64   // the symbol's first period (noPeriod: not started)
	lateMark  int64   // last period marked FlagLate (one mark per kline)
	lastClose parse.Decimal
}

type symbolState struct {
	ids      idRuns
	sym      uint32
	dirty    bool // in Aggregator.dirty: base updates pending
	pdirty   bool // in Aggregator.parents: trades since the last parent updates, in [pdMin, pdMax]
	retired  bool
	hold     int64 // klines with CloseTime >= hold stay open (NoHold: none)
	lastTime int64 // largest trade time applied
	// partialSince: the first kline of every interval opening before it is
	// partial (OpPartial); math.MinInt64: none.
	partialSince int64
	pdMin, pdMax int64
	series       []series
}

// intervalState is the state of one interval, shared by all symbols.
type intervalState struct {
	iv       Interval
	window   int   // window slots per symbol
	history  int   // closed klines kept per symbol
	closed   int64 // base: every period < closed is closed for every symbol
	nextOpen int64 // base: open time of period closed+1, the watermark that closes period `closed`
	hidden   bool  // the base no configured interval is: computed, never emitted
	child    int   // the interval this one folds (-1: the base, fed by trades)
	parents  []int // the intervals that fold this one
	ratio    int   // child periods in one period, at most
}

// Aggregator turns trades into klines for the symbols of one shard.
//
// An Aggregator is owned by a single goroutine: none of its methods may be
// called concurrently, and it takes no locks. The Emitter is called
// synchronously from Apply, Advance, Flush and FlushUpdates on that goroutine.
type Aggregator struct {
	cfg     Config
	out     Emitter
	ivs     []intervalState // configured intervals, then a hidden base if any
	base    int
	shown   int            // configured intervals: Kline.Interval < shown
	order   []int          // interval indices, children first
	symbols []*symbolState // indexed by parse.Trade.Symbol
	live    int            // non-nil symbols
	retired int            // retired symbols not freed yet
	dirty   []uint32       // symbols with base updates pending
	// parents lists the symbols with parents' updates pending, in the order
	// they traded; parents[next:round] are due in the round StartParents
	// began, the rest in the next.
	parents     []uint32
	next, round int
	slab        int // entries per symbol
	c           Counters
	upd         Kline  // the parent kline being handed to Update
	folds       []fold // by interval, for the symbol flushParents is at

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
		a.ivs = append(a.ivs, intervalState{iv: iv})
	}
	a.shown = len(a.ivs)
	ivs, base, err := plan(a.ivs)
	if err != nil {
		return nil, err
	}
	a.ivs, a.base, a.order = ivs, base, order(ivs)
	a.folds = make([]fold, len(ivs))
	for i := range a.ivs {
		ivs := &a.ivs[i]
		l := length(ivs.iv)
		// Periods open at once: those closing within Grace of the watermark,
		// the current one, and one spare for trades running ahead of it.
		w := int((cfg.Grace+l-1)/l) + 2
		h := cfg.History
		if cfg.Lateness > 0 {
			h = max(h, min(int((cfg.Lateness+l-1)/l)+1, 1024))
		}
		// A parent folds its children as they close: they stay in history
		// until it closes (and its corrections can find them).
		for _, p := range ivs.parents {
			h = max(h, a.ivs[p].ratio+1)
		}
		ivs.window, ivs.history = w, h
		ivs.closed, ivs.nextOpen = math.MinInt64, math.MinInt64
		a.slab += w + h
	}
	return a, nil
}

// Config returns the configuration in use.
func (a *Aggregator) Config() Config { return a.cfg }

// Counters returns the running totals.
func (a *Aggregator) Counters() Counters { return a.c }

// Apply applies one trade, or executes an in-band command (t.Control != 0, see
// Op). It allocates only for a symbol's first trade. A trade updates the base
// interval only; the others fold it as its klines close.
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
	s := &st.series[a.base]
	if t.TradeTime < s.curOpen || t.TradeTime >= s.curNext || t.AggID < s.cur.k.LastAggID {
		quote := Mul64(uint64(t.Price), uint64(t.Qty))
		if a.applySlow(st, s, t, quote) {
			a.c.TooLateTrades++
			a.out.Dropped(t, ErrTooLate)
		}
	} else {
		// Fast path, inlined by hand: the cached kline already has trades, and
		// this one is the newest of them.
		quote := Mul64(uint64(t.Price), uint64(t.Qty))
		price, qty, cnt := t.Price, uint64(t.Qty), t.Count()
		// Taker-buy sums add zero for taker sells: branch-free, since the side
		// is unpredictable.
		mask := uint64(0)
		if !t.BuyerMaker {
			mask = ^uint64(0)
		}
		tbQty, tbQuote := qty&mask, Uint128{Hi: quote.Hi & mask, Lo: quote.Lo & mask}
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
	// After the trade: the empty klines a trade far ahead closes see the
	// silence before it.
	st.lastTime = max(st.lastTime, t.TradeTime)
	a.markDirty(st, t.TradeTime)
}

// relist starts a retired symbol again that trades before its state was
// freed: the base skips to the trade's period, with no empty klines for the
// time it was delisted, and the longer intervals holding its last klines
// close first if the trade is past them.
func (a *Aggregator) relist(st *symbolState, at int64) {
	st.retired = false
	a.retired--
	b := &st.series[a.base]
	if b.newest >= b.next {
		return // a traded period still open: it goes on from there
	}
	if p := a.ivs[a.base].iv.Period(at); p > b.next {
		a.retireSkip(st, b, p-1)
	}
}

// markDirty notes a trade at time at for the next updates.
func (a *Aggregator) markDirty(st *symbolState, at int64) {
	if !st.pdirty {
		st.pdirty, st.pdMin, st.pdMax = true, at, at
		a.parents = append(a.parents, st.sym)
	} else {
		st.pdMin, st.pdMax = min(st.pdMin, at), max(st.pdMax, at)
	}
	if !st.dirty {
		st.dirty = true
		a.dirty = append(a.dirty, st.sym)
	}
}

// add applies t to k (open or closed) and reports overflow. Open and Close
// follow the aggTrade ids, whatever the order trades arrive in.
func (a *Aggregator) add(k *Kline, t *parse.Trade, quote Uint128) {
	p := t.Price
	switch {
	case !hasTrades(k):
		k.Open, k.High, k.Low, k.Close = p, p, p, p
		k.FirstAggID, k.FirstTradeID = t.AggID, t.FirstID
		k.LastAggID, k.LastTradeID = t.AggID, t.LastID
		k.Flags &^= FlagEmpty
	default:
		k.High = max(k.High, p)
		k.Low = min(k.Low, p)
		if t.AggID > k.LastAggID {
			k.Close = p
			k.LastAggID, k.LastTradeID = t.AggID, t.LastID
		}
		if t.AggID < k.FirstAggID {
			k.Open = p
			k.FirstAggID, k.FirstTradeID = t.AggID, t.FirstID
		}
	}
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
	if !hasTrades(k) {
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
	st := a.newState(sym)
	st.ids, st.lastTime = newIDRuns(t.AggID), t.TradeTime
	if int(sym) < len(a.partials) && a.partials[sym] != 0 {
		st.partialSince, a.partials[sym] = a.partials[sym], 0
	}
	a.install(st)
	a.c.Trades++
	a.start(st, t.TradeTime)
	quote := Mul64(uint64(t.Price), uint64(t.Qty))
	s := &st.series[a.base]
	a.applySlow(st, s, t, quote)
	// The watermark is already past this period: close it now.
	if ivs := &a.ivs[a.base]; ivs.iv.Period(t.TradeTime) < ivs.closed {
		a.closeThrough(st, s, ivs.closed-1)
	}
	a.markDirty(st, t.TradeTime)
}

// start starts every series not started yet of st at the period holding at:
// the first kline of each opens there (partial if it opens before the
// symbol's partialSince).
func (a *Aggregator) start(st *symbolState, at int64) {
	for _, i := range a.order {
		s := &st.series[i]
		if s.first != noPeriod {
			continue
		}
		p := a.ivs[i].iv.Period(at)
		s.next, s.first = p, p
		if i == a.base {
			continue
		}
		// A parent started after its child (restored without it): its first
		// kline misses the child's earlier klines.
		e := a.parentEntry(st, s, i, p)
		if c := &st.series[a.ivs[i].child]; c.first != noPeriod && c.first < a.ivs[a.ivs[i].child].iv.Period(e.k.OpenTime) {
			e.k.Flags |= FlagPartial
		}
	}
}

// applySlow applies a trade to the base outside the cached period: another
// open period, a period beyond the window, a closed one, or a trade older by
// id than the cached kline's last. It reports a trade too late for some
// interval.
func (a *Aggregator) applySlow(st *symbolState, s *series, t *parse.Trade, quote Uint128) (tooLate bool) {
	i := a.base
	ivs := &a.ivs[i]
	p := ivs.iv.Period(t.TradeTime)
	if s.first == noPeriod {
		a.start(st, t.TradeTime)
	}
	if p < s.next {
		return a.applyLate(st, t, quote)
	}
	w := int64(len(s.window))
	if a.cfg.PromptClose && p > s.next && s.newest >= s.next && p > s.newest {
		// A later period's trade: in id order, nothing more comes for the
		// earlier ones.
		before := s.next
		a.closeThrough(st, s, p-1)
		a.c.PromptCloses += uint64(s.next - before)
	}
	if p >= s.next+w {
		a.c.EarlyCloses += uint64(p - w + 1 - s.next)
		a.closeForced(st, s, p-w)
	}
	e := &s.window[floorMod(p, w)]
	if !e.live {
		a.initEntry(e, st, i, p)
		if p == s.first && e.k.OpenTime < st.partialSince {
			e.k.Flags |= FlagPartial
		}
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
	e.live, e.dirty, e.folded = true, false, false
}

// applyLate applies a trade whose base period is already closed: to every
// interval's kline that holds it, corrections of closed ones (emitted again)
// and the accumulators of open parents that folded the corrected child. It
// reports whether some interval had no kline left to correct (too late: the
// trade is counted, and the kline marked FlagLate once).
func (a *Aggregator) applyLate(st *symbolState, t *parse.Trade, quote Uint128) (tooLate bool) {
	for _, i := range a.order {
		s := &st.series[i]
		if s.first == noPeriod {
			continue
		}
		p := a.ivs[i].iv.Period(t.TradeTime)
		if p >= s.next {
			// An open parent period: its accumulator holds the closed children
			// only; the trade reached it through the child if that one is closed.
			c := a.ivs[i].child
			if cs := &st.series[c]; a.ivs[c].iv.Period(t.TradeTime) < cs.next {
				e := a.parentEntry(st, s, i, p)
				a.add(&e.k, t, quote)
				e.folded = true
			}
			continue
		}
		if !a.correct(st, s, i, p, t, quote) {
			tooLate = true
		}
		if i != a.base {
			a.refreshEmpty(s)
		}
	}
	return tooLate
}

// refreshEmpty gives a parent's open accumulators that hold no trade yet the
// close before them again, after a correction changed it: the empty children
// they folded carried the old one.
func (a *Aggregator) refreshEmpty(s *series) {
	c := s.lastClose
	w := int64(len(s.window))
	for q := s.next; q < s.next+w; q++ {
		e := &s.window[floorMod(q, w)]
		if !e.live || e.period != q {
			continue
		}
		if hasTrades(&e.k) {
			c = e.k.Close
			continue
		}
		e.k.Open, e.k.High, e.k.Low, e.k.Close = c, c, c, c
	}
}

// correct applies a late trade to closed period p of one series; it reports
// false if the kline is no longer kept.
func (a *Aggregator) correct(st *symbolState, s *series, i int, p int64, t *parse.Trade, quote Uint128) bool {
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
	a.emitClosed(i, &e.k)
	if e.k.Close == oldClose {
		return true
	}
	// Empty successors copy the previous close.
	c := e.k.Close
	for q := p + 1; q < s.next; q++ {
		e := &s.history[floorMod(q, h)]
		if !e.live || e.period != q || hasTrades(&e.k) {
			return true
		}
		e.k.Open, e.k.High, e.k.Low, e.k.Close = c, c, c, c
		e.k.Flags |= FlagCorrected
		a.emitClosed(i, &e.k)
	}
	s.lastClose = c
	return true
}

// emitClosed hands a closed kline (or a correction) to the Emitter, unless it
// belongs to the hidden base.
func (a *Aggregator) emitClosed(i int, k *Kline) {
	if i < a.shown {
		a.out.Closed(k)
	}
}

// closeThrough closes the base periods of one symbol up to and including q,
// or up to its hold; parents close as their last children do.
func (a *Aggregator) closeThrough(st *symbolState, s *series, q int64) {
	if st.hold != NoHold {
		q = min(q, a.ivs[a.base].iv.Period(st.hold)-1)
	}
	a.closeForced(st, s, q)
}

// closeForced closes the base periods of one symbol up to and including q,
// holds or not.
func (a *Aggregator) closeForced(st *symbolState, s *series, q int64) {
	if s.first == noPeriod {
		return // not started: its first trade is still to come
	}
	for s.next <= q {
		if st.retired && s.newest < s.next {
			a.retireSkip(st, s, q)
			return
		}
		a.closeNext(st, s)
	}
}

// retireSkip passes, without klines, the base periods through q of a
// delisted symbol whose base has no traded period open: one by one while
// some longer interval's period holding its last klines is open (so that it
// closes when its period ends), then at once.
func (a *Aggregator) retireSkip(st *symbolState, b *series, q int64) {
	w := int64(len(b.window))
	for need := a.retireEnd(st); b.next <= min(q, need); {
		p := b.next
		if e := &b.window[floorMod(p, w)]; e.live && e.period == p {
			e.live, e.dirty = false, false
		}
		b.next++
		a.childClosed(st, a.base, p, nil)
	}
	if b.next <= q {
		for j := range b.window {
			b.window[j].live, b.window[j].dirty = false, false
		}
		b.next = q + 1
	}
	b.cur, b.curOpen, b.curNext = nil, math.MaxInt64, math.MinInt64
}

// retireEnd returns the last base period a delisted symbol's klines need:
// the end of the longest interval's period holding its last base kline.
func (a *Aggregator) retireEnd(st *symbolState) int64 {
	b := &st.series[a.base]
	last := b.newest
	if last == noPeriod {
		last = b.next - 1
	}
	at := a.ivs[a.base].iv.periodOpen(last)
	need := last
	for _, i := range a.order {
		if s := &st.series[i]; i != a.base && s.first != noPeriod {
			if p := a.ivs[i].iv.Period(at); p >= s.next {
				need = max(need, a.ivs[a.base].iv.Period(a.ivs[i].iv.periodOpen(p+1))-1)
			}
		}
	}
	return need
}

// closeNext closes base period s.next of one symbol, emits it, and folds it
// into the parents.
func (a *Aggregator) closeNext(st *symbolState, s *series) {
	i := a.base
	q := s.next
	e := &s.window[floorMod(q, int64(len(s.window)))]
	if !e.live {
		a.initEntry(e, st, i, q)
	} else if e.period != q {
		panic(fmt.Sprintf("BUG: closing period %d but its window slot holds period %d", q, e.period))
	}
	if !hasTrades(&e.k) {
		if a.cfg.MaxEmpty > 0 && e.k.OpenTime-st.lastTime > a.cfg.MaxEmpty {
			// Silent past the bound: the kline before was the last (FlagQuiet).
			e.live, e.dirty = false, false
			if s.cur == e {
				s.cur, s.curOpen, s.curNext = nil, math.MaxInt64, math.MinInt64
			}
			s.next = q + 1
			a.c.QuietSkipped++
			a.childClosed(st, i, q, nil)
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
	if s.cur == e {
		s.cur, s.curOpen, s.curNext = nil, math.MaxInt64, math.MinInt64
	}
	a.finish(st, s, i, e, q)
}

// finish closes period q of series i from its window entry e: into the
// history, out to the Emitter, and into the parents.
func (a *Aggregator) finish(st *symbolState, s *series, i int, e *entry, q int64) {
	e.k.Closed = true
	e.live, e.dirty, e.folded = false, false, false
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
				panic(fmt.Sprintf("BUG: %s window holds period %d outside [%d, %d)", a.ivs[i].iv.Name, w.period, s.next, s.next+int64(len(s.window))))
			}
		}
	}
	a.emitClosed(i, out)
	a.childClosed(st, i, q, out)
}

// Advance closes, for every symbol with state, every kline whose CloseTime +
// Grace < watermark, empty periods included, in open-time order per (symbol,
// interval). watermark is event time, never the wall clock. It costs
// O(symbols) only when a base period boundary is crossed and does not allocate.
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
		b := &st.series[a.base]
		if b.first == noPeriod {
			continue
		}
		if b.newest == noPeriod {
			continue
		}
		end := a.ivs[a.base].iv.periodOpen(b.newest) // the newest traded period's open
		if b.newest >= b.next {
			if a.closeThrough(st, b, b.newest); b.next <= b.newest {
				continue // held: its parents wait for it
			}
		}
		// Parents whose period is not over: they close with what they folded.
		for _, i := range a.order {
			s := &st.series[i]
			if i == a.base || s.first == noPeriod {
				continue
			}
			for s.next <= a.ivs[i].iv.Period(end) {
				a.closeParent(st, s, i)
			}
		}
	}
	a.freeRetired()
}

// NextClose returns the smallest watermark at which Advance would close a
// kline (math.MinInt64 before the first Advance): an idle caller can sleep
// until then. Lifting a hold (OpHold) closes what it held at once.
func (a *Aggregator) NextClose() int64 {
	next := a.ivs[a.base].nextOpen
	if next == math.MinInt64 || next > math.MaxInt64-a.cfg.Grace {
		return next
	}
	return next + a.cfg.Grace
}

// closeUpTo closes every base period q with open(q+1) <= limit, and through
// them every parent period that ends there.
func (a *Aggregator) closeUpTo(limit int64) {
	ivs := &a.ivs[a.base]
	if limit < ivs.nextOpen {
		return
	}
	q := ivs.iv.Period(limit) - 1
	for _, st := range a.symbols {
		if st != nil {
			a.closeThrough(st, &st.series[a.base], q)
		}
	}
	ivs.closed = q + 1
	ivs.nextOpen = ivs.iv.periodOpen(q + 2)
	a.freeRetired()
}

// FlushUpdates emits, for each symbol with trades since its last update, the
// base klines that changed (Closed == false), oldest first: a period still in
// its grace time whose last trades came with the next period's first ones is
// sent too, so a store never holds a newer open kline while an older one's
// trades exist nowhere. With parents it also emits the running kline of every
// longer interval's open period those trades fell in: folds are not free, so
// the caller asks for them at the pace they are consumed. When Update refuses
// one, it stops; the rest stays pending for the next call.
func (a *Aggregator) FlushUpdates(parents bool) {
	if !a.flushBases() || !parents {
		return
	}
	a.StartParents()
	a.flushParentsSome(len(a.parents))
}

// StartParents begins a round of parents' updates: every symbol with trades
// since its parents' last update is due for one, which FlushUpdatesSome
// emits a few symbols at a time. Symbols that trade later wait for the next
// round.
func (a *Aggregator) StartParents() {
	n := copy(a.parents, a.parents[a.next:])
	a.parents, a.next, a.round = a.parents[:n], 0, n
}

// FlushUpdatesSome is FlushUpdates with the parents' folds spread over calls:
// it emits every changed base kline and the parents' running klines of at
// most n of the symbols due in the round StartParents began, and reports
// whether the round is over. Folding a few hundred symbols' parents at once
// keeps a shard from its trades for a millisecond; a few at a time, between
// batches of trades, for microseconds.
func (a *Aggregator) FlushUpdatesSome(n int) (roundDone bool) {
	return a.flushBases() && a.flushParentsSome(n)
}

// flushBases emits the changed base klines of every symbol that traded since
// the last call; false if Update refused one (the rest stays pending).
func (a *Aggregator) flushBases() bool {
	for j, sym := range a.dirty {
		st := a.symbols[sym]
		if st == nil || !st.dirty {
			continue
		}
		if !a.flushBase(st) {
			a.c.UpdatesDeferred++
			a.dirty = a.dirty[:copy(a.dirty, a.dirty[j:])]
			return false
		}
		st.dirty = false
	}
	a.dirty = a.dirty[:0]
	return true
}

// flushParentsSome emits the parents' updates of at most n symbols of the
// round and reports whether the round is over.
func (a *Aggregator) flushParentsSome(n int) bool {
	for ; a.next < a.round; a.next++ {
		st := a.symbols[a.parents[a.next]]
		if st == nil || !st.pdirty {
			continue
		}
		if n == 0 {
			return false
		}
		if !a.flushParents(st) {
			a.c.UpdatesDeferred++
			return false
		}
		n--
	}
	return true
}

// Pending reports updates not emitted yet: FlushUpdates has work.
func (a *Aggregator) Pending() bool { return len(a.dirty) > 0 || a.next < len(a.parents) }

// flushBase emits the symbol's changed base klines; false if refused.
func (a *Aggregator) flushBase(st *symbolState) bool {
	s := &st.series[a.base]
	if s.newest < s.next {
		return true
	}
	w := int64(len(s.window))
	for q := s.next; q <= s.newest; q++ {
		e := &s.window[floorMod(q, w)]
		if !e.live || e.period != q || !e.dirty {
			continue
		}
		if a.base < a.shown {
			if !a.out.Update(&e.k) {
				return false
			}
			a.c.Updates++
		}
		e.dirty = false
	}
	return true
}

// flushParents emits the running klines of the open parent periods the
// symbol's trades since the last call fell in; false if refused.
func (a *Aggregator) flushParents(st *symbolState) bool {
	if !st.pdirty {
		return true
	}
	b := &st.series[a.base]
	limit := a.ivs[a.base].iv.periodOpen(max(b.newest, b.next-1))
	for i := range a.folds {
		a.folds[i].valid = false
	}
	for _, i := range a.order {
		if i == a.base || i >= a.shown {
			continue
		}
		s := &st.series[i]
		if s.first == noPeriod {
			continue
		}
		iv := &a.ivs[i].iv
		for p := max(iv.Period(st.pdMin), s.next); p <= iv.Period(st.pdMax); p++ {
			k, ok := a.openFold(st, i, p, limit)
			if !ok {
				continue
			}
			a.upd = k // k would escape through the Emitter
			if !a.out.Update(&a.upd) {
				return false
			}
			a.c.Updates++
		}
	}
	st.pdirty = false
	return true
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
		if b := &st.series[a.base]; b.newest >= b.next || b.next <= a.retireEnd(st) {
			continue // klines still to close
		}
		tb := &tomb{ids: st.ids, written: math.MinInt64}
		for i := range st.series {
			if s := &st.series[i]; s.first != noPeriod {
				tb.written = max(tb.written, a.ivs[i].iv.periodOpen(s.next))
			}
		}
		a.tombs[uint32(id)] = tb
		a.symbols[id] = nil
		a.live--
		a.retired--
	}
}

// MarkGap flags the symbol's klines overlapping trade times [from, to] at once;
// see OpMarkGap for the in-band form.
func (a *Aggregator) MarkGap(symbol uint32, from, to int64) { a.markGap(symbol, from, to) }
