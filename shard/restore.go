package shard

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/klagg/klagg/parse"
)

// ErrRestore: saved state that does not fit the configuration or the symbol.
var ErrRestore = errors.New("cannot restore saved klines")

// Saved is what a store kept of one (symbol, interval) series, to resume it
// after a restart.
type Saved struct {
	Interval int   // index into Config.Intervals
	Through  int64 // last aggTrade id applied to the series (-1: none)
	// Klines are the series' newest klines, oldest first: closed ones (Closed)
	// for the correction history, then the open ones. Symbol and Interval are
	// ignored.
	Klines []Kline
}

// Restore gives a symbol, before any of its trades, the state a previous run
// saved: open klines go back into their window, closed ones into the
// correction history, and each interval skips the trades at or below its own
// Through when the trades missed while down are applied again (the smallest
// Through is where the caller fetches from). An interval that has nothing
// saved starts with the symbol's next trade, its first kline partial. The
// series' state must be self-consistent: every kline includes each of the
// series' trades up to Through that falls in its period.
func (a *Aggregator) Restore(symbol uint32, saved []Saved) error {
	if a.state(symbol) != nil {
		return fmt.Errorf("%w: symbol %d already has state", ErrRestore, symbol)
	}
	st := a.newState(symbol)
	resume := make([]int64, len(a.ivs))
	for i := range resume {
		resume[i] = -1
	}
	minThrough, any := int64(math.MaxInt64), false
	for _, sv := range saved {
		if sv.Interval < 0 || sv.Interval >= len(a.ivs) {
			return fmt.Errorf("%w: interval index %d of %d", ErrRestore, sv.Interval, len(a.ivs))
		}
		if err := a.restoreSeries(st, sv); err != nil {
			return err
		}
		if sv.Through >= 0 {
			resume[sv.Interval] = sv.Through
			minThrough = min(minThrough, sv.Through)
			any = true
		}
		for _, k := range sv.Klines {
			st.lastTime = max(st.lastTime, k.OpenTime)
		}
	}
	if !any {
		return nil // nothing ever applied: the first trade starts the symbol
	}
	st.ids = idRuns{cur: idRange{lo: 0, hi: minThrough}}
	st.resume, st.resumeMax = resume, slices.Max(resume)
	a.install(st)
	return nil
}

// restoreSeries loads one saved series into st.
func (a *Aggregator) restoreSeries(st *symbolState, sv Saved) error {
	i := sv.Interval
	s := &st.series[i]
	iv := &a.ivs[i].iv
	var open, closed []Kline
	for _, k := range sv.Klines {
		if iv.OpenTime(k.OpenTime) != k.OpenTime || k.CloseTime != iv.CloseTime(k.OpenTime) {
			return fmt.Errorf("%w: %s kline %d-%d is not on the interval's grid", ErrRestore, iv.Name, k.OpenTime, k.CloseTime)
		}
		k.Symbol, k.Interval, k.Mark = st.sym, uint8(i), false
		if k.Closed {
			closed = append(closed, k)
		} else {
			open = append(open, k)
		}
	}
	if len(open)+len(closed) == 0 {
		return nil
	}
	s.first = math.MaxInt64
	for _, k := range sv.Klines {
		s.first = min(s.first, iv.Period(k.OpenTime))
	}
	s.next = s.first
	if n := len(closed); n > 0 {
		s.next = iv.Period(closed[n-1].OpenTime) + 1
		s.lastClose = closed[n-1].Close
	}
	h := int64(len(s.history))
	for _, k := range closed {
		if p := iv.Period(k.OpenTime); h > 0 && p >= s.next-h {
			e := &s.history[floorMod(p, h)]
			e.k, e.period, e.live = k, p, true
		}
	}
	w := int64(len(s.window))
	for _, k := range open {
		p := iv.Period(k.OpenTime)
		if p < s.next || p >= s.next+w {
			return fmt.Errorf("%w: %s open kline %d is not after the closed ones or beyond the window", ErrRestore, iv.Name, k.OpenTime)
		}
		e := &s.window[floorMod(p, w)]
		e.k, e.period, e.live = k, p, true
		if k.Count > 0 || k.FirstAggID >= 0 {
			s.newest = max(s.newest, p)
			s.cur, s.curOpen, s.curNext = e, k.OpenTime, k.CloseTime+1
		}
	}
	return nil
}

// newState allocates a symbol's state, every series not started yet.
func (a *Aggregator) newState(sym uint32) *symbolState {
	slab := make([]entry, a.slab)
	st := &symbolState{sym: sym, hold: NoHold, lastTime: math.MinInt64, series: make([]series, len(a.ivs))}
	for i := range st.series {
		w, h := a.ivs[i].window, a.ivs[i].history
		st.series[i] = series{
			window:  slab[:w:w],
			history: slab[w : w+h : w+h],
			curOpen: math.MaxInt64, curNext: math.MinInt64,
			newest: math.MinInt64, lateMark: math.MinInt64, first: math.MinInt64,
		}
		slab = slab[w+h:]
	}
	return st
}

// install makes st the state of its symbol.
func (a *Aggregator) install(st *symbolState) {
	sym := st.sym
	if int(sym) >= len(a.symbols) {
		n := max(int(sym)+1, 2*len(a.symbols), 16)
		grown := make([]*symbolState, n)
		copy(grown, a.symbols)
		a.symbols = grown
	}
	if int(sym) < len(a.holds) && a.holds[sym] != 0 {
		st.hold, a.holds[sym] = a.holds[sym], 0
	}
	a.symbols[sym] = st
	a.live++
	if cap(a.dirty) < a.live {
		d := make([]uint32, len(a.dirty), 2*a.live+16)
		copy(d, a.dirty)
		a.dirty = d
	}
}

// applyResumed applies a trade of a restored symbol to the series that have
// not seen it yet (its id is above their Through).
func (a *Aggregator) applyResumed(st *symbolState, t *parse.Trade) {
	quote := Mul64(uint64(t.Price), uint64(t.Qty))
	late := false
	for i := range st.series {
		if t.AggID <= st.resume[i] {
			continue
		}
		late = a.applySlow(st, &st.series[i], i, t, quote) || late
	}
	if t.AggID >= st.resumeMax {
		st.resume = nil // every series is past what it had
	}
	st.lastTime = max(st.lastTime, t.TradeTime)
	if late {
		a.c.TooLateTrades++
		a.out.Dropped(t, ErrTooLate)
	}
	a.markDirty(st, t.Symbol)
}
