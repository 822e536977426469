package shard

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrRestore: saved state that does not fit the configuration or the symbol.
var ErrRestore = errors.New("cannot restore saved klines")

// Saved is what a store kept of one (symbol, interval) series, to resume it
// after a restart.
type Saved struct {
	Interval int // index into Config.Intervals
	// Through, for the base interval (see Base), is the last aggTrade id its
	// klines include: every trade up to it is in the base klines saved, and the
	// caller fetches the trades after it again. Other intervals' Through is
	// ignored: their klines are rebuilt from their children's.
	Through int64
	// Klines are the series' klines, oldest first: closed ones (Closed) for
	// the correction history, then the open ones. Symbol and Interval are
	// ignored. A longer interval needs its child's closed klines from the
	// open time of its first period not closed (see Child).
	Klines []Kline
}

// Base returns the index in ivs of the interval trades update, the one every
// other is folded from, or false when none of ivs is (3m and 5m: the klines of
// a hidden 1m are folded, and cannot be restored).
func Base(ivs []Interval) (int, bool) {
	st := make([]intervalState, len(ivs))
	for i, iv := range ivs {
		st[i].iv = iv
	}
	_, base, err := plan(st)
	return base, err == nil && base < len(ivs)
}

// Child returns, for each of ivs, the index of the interval its klines are
// folded from (-1: the base, or one folded from a hidden base). A restart
// loads each child's closed klines from the first period of its parents not
// closed in the store (see Saved).
func Child(ivs []Interval) []int {
	st := make([]intervalState, len(ivs))
	for i, iv := range ivs {
		st[i].iv = iv
	}
	out := make([]int, len(ivs))
	st, _, err := plan(st)
	for i := range out {
		out[i] = -1
		if err == nil && st[i].child < len(ivs) {
			out[i] = st[i].child
		}
	}
	return out
}

// Restore gives a symbol, before any of its trades, the state a previous run
// saved. The base interval's klines go back as they were: open ones into
// their window, closed ones into the correction history; its Through becomes
// the symbol's last applied trade, so the trades after it, fetched again,
// complete them. Every longer interval keeps its closed klines for
// corrections and rebuilds its open periods from its child's closed klines;
// a period whose children all closed while the store fell behind closes (and
// is emitted) at once. An interval nothing was saved of starts with its
// child's first kline, its first kline partial when that opens after it.
// Without the base interval's klines the symbol starts afresh with its next
// trade (its first klines partial if OpPartial says so).
func (a *Aggregator) Restore(symbol uint32, saved []Saved) error {
	if a.state(symbol) != nil {
		return fmt.Errorf("%w: symbol %d already has state", ErrRestore, symbol)
	}
	by := make([]*Saved, len(a.ivs))
	for j := range saved {
		sv := &saved[j]
		if sv.Interval < 0 || sv.Interval >= a.shown {
			return fmt.Errorf("%w: interval index %d of %d", ErrRestore, sv.Interval, a.shown)
		}
		if by[sv.Interval] != nil {
			return fmt.Errorf("%w: interval %s saved twice", ErrRestore, a.ivs[sv.Interval].iv.Name)
		}
		iv := &a.ivs[sv.Interval].iv
		for _, k := range sv.Klines {
			if iv.OpenTime(k.OpenTime) != k.OpenTime || k.CloseTime != iv.CloseTime(k.OpenTime) {
				return fmt.Errorf("%w: %s kline %d-%d is not on the interval's grid", ErrRestore, iv.Name, k.OpenTime, k.CloseTime)
			}
		}
		by[sv.Interval] = sv
	}
	if a.base >= a.shown {
		return fmt.Errorf("%w: no configured interval is the base (%s) the others fold", ErrRestore, a.ivs[a.base].iv.Name)
	}
	b := by[a.base]
	if b == nil || b.Through < 0 || len(b.Klines) == 0 {
		return nil // nothing ever applied: the first trade starts the symbol
	}
	st := a.newState(symbol)
	if err := a.restoreBase(st, b.Klines); err != nil {
		return err
	}
	// Closed klines by interval, saved or closed here: what parents fold.
	closed := make([][]Kline, len(a.ivs))
	closed[a.base] = closedOf(b.Klines)
	for _, p := range a.order {
		if p == a.base {
			continue
		}
		var ks []Kline
		if sv := by[p]; sv != nil {
			ks = sv.Klines
		}
		closed[p] = a.restoreParent(st, p, ks, closed[a.ivs[p].child])
	}
	for _, k := range b.Klines {
		st.lastTime = max(st.lastTime, k.OpenTime)
	}
	st.ids = idRuns{cur: idRange{lo: 0, hi: b.Through}}
	a.install(st)
	return nil
}

// closedOf returns the closed klines of ks, oldest first.
func closedOf(ks []Kline) []Kline {
	var out []Kline
	for _, k := range ks {
		if k.Closed && !k.Mark {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(x, y Kline) int { return cmpInt(x.OpenTime, y.OpenTime) })
	return out
}

func cmpInt(x, y int64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// restoreBase loads the base's saved klines into st.
func (a *Aggregator) restoreBase(st *symbolState, ks []Kline) error {
	i := a.base
	s := &st.series[i]
	iv := &a.ivs[i].iv
	closed := closedOf(ks)
	s.first = math.MaxInt64
	for _, k := range ks {
		s.first = min(s.first, iv.Period(k.OpenTime))
	}
	s.next = s.first
	if n := len(closed); n > 0 {
		s.next = iv.Period(closed[n-1].OpenTime) + 1
		s.lastClose = closed[n-1].Close
	}
	a.restoreHistory(st, i, closed)
	w := int64(len(s.window))
	for _, k := range ks {
		if k.Closed {
			continue
		}
		p := iv.Period(k.OpenTime)
		if p < s.next || p >= s.next+w {
			return fmt.Errorf("%w: %s open kline %d is not after the closed ones or beyond the window", ErrRestore, iv.Name, k.OpenTime)
		}
		e := &s.window[floorMod(p, w)]
		e.k, e.period, e.live = k, p, true
		e.k.Symbol, e.k.Interval = st.sym, uint8(i)
		if hasTrades(&k) {
			s.newest = max(s.newest, p)
			s.cur, s.curOpen, s.curNext = e, k.OpenTime, k.CloseTime+1
		}
	}
	return nil
}

// restoreHistory puts the newest of closed (oldest first, all before s.next)
// into series i's correction history.
func (a *Aggregator) restoreHistory(st *symbolState, i int, closed []Kline) {
	s := &st.series[i]
	h := int64(len(s.history))
	for _, k := range closed {
		if p := a.ivs[i].iv.Period(k.OpenTime); h > 0 && p >= s.next-h && p < s.next {
			e := &s.history[floorMod(p, h)]
			e.k, e.period, e.live = k, p, true
			e.k.Symbol, e.k.Interval, e.k.Mark = st.sym, uint8(i), false
		}
	}
}

// restoreParent loads parent interval p's saved klines ks and folds its
// child's closed klines (oldest first) into the periods it has not closed;
// it returns p's closed klines, saved and closed here.
func (a *Aggregator) restoreParent(st *symbolState, p int, ks, children []Kline) []Kline {
	ps := &st.series[p]
	piv := &a.ivs[p].iv
	c := a.ivs[p].child
	cs := &st.series[c]
	civ := &a.ivs[c].iv
	closed := closedOf(ks)
	var open *Kline
	for j := range ks {
		if !ks[j].Closed && (open == nil || ks[j].OpenTime < open.OpenTime) {
			open = &ks[j]
		}
	}
	switch {
	case len(closed) > 0:
		ps.next = piv.Period(closed[len(closed)-1].OpenTime) + 1
		ps.lastClose = closed[len(closed)-1].Close
		ps.first = piv.Period(closed[0].OpenTime)
	case open != nil: // its first periods: rebuilt from the children, if they reach back
		ps.next = min(piv.Period(open.OpenTime), piv.Period(civ.periodOpen(cs.first)))
		ps.first = ps.next
	default: // nothing saved: it starts with its child
		ps.next = piv.Period(civ.periodOpen(cs.first))
		ps.first = ps.next
	}
	a.restoreHistory(st, p, closed)
	from := piv.periodOpen(ps.next)
	// The first period folded misses children unless they were all loaded:
	// the child's klines reach back to its start, or the saved open kline's
	// first trade is the children's.
	covered := civ.periodOpen(cs.first) <= from
	if !covered && open != nil && piv.Period(open.OpenTime) == ps.next && hasTrades(open) {
		for _, k := range children {
			if k.OpenTime >= from && hasTrades(&k) {
				covered = k.FirstAggID == open.FirstAggID
				break
			}
		}
	}
	partialAt := piv.Period(max(from, civ.periodOpen(cs.first)))
	flag := func(pp int64) {
		if !covered && pp == partialAt {
			a.parentEntry(st, ps, p, pp).k.Flags |= FlagPartial
			covered = true
		}
	}
	for j := range ks {
		if k := &ks[j]; !k.Closed {
			if pp := piv.Period(k.OpenTime); pp >= ps.next && pp < ps.next+int64(len(ps.window)) {
				a.parentEntry(st, ps, p, pp).k.Flags |= k.Flags & QualityFlags
			}
		}
	}
	done := func(q int64) {
		if h := int64(len(ps.history)); h > 0 {
			if he := &ps.history[floorMod(q, h)]; he.live && he.period == q {
				closed = append(closed, he.k)
			}
		}
	}
	for _, k := range children {
		if k.OpenTime < from || civ.Period(k.OpenTime) >= cs.next {
			continue
		}
		pp := piv.Period(k.OpenTime)
		for ps.next < pp { // its children all closed: it closes now
			q := ps.next
			a.closeParent(st, ps, p)
			done(q)
		}
		flag(pp)
		e := a.parentEntry(st, ps, p, pp)
		a.merge(&e.k, &k)
		e.folded = true
	}
	for piv.periodOpen(ps.next+1) <= civ.periodOpen(cs.next) {
		q := ps.next
		a.closeParent(st, ps, p)
		done(q)
	}
	if partialAt >= ps.next && partialAt < ps.next+int64(len(ps.window)) {
		flag(partialAt)
	}
	return closed
}

// newState allocates a symbol's state, every series not started yet.
func (a *Aggregator) newState(sym uint32) *symbolState {
	slab := make([]entry, a.slab)
	st := &symbolState{sym: sym, hold: NoHold, lastTime: math.MinInt64, partialSince: math.MinInt64, series: make([]series, len(a.ivs))}
	for i := range st.series {
		w, h := a.ivs[i].window, a.ivs[i].history
		st.series[i] = series{
			window:  slab[:w:w],
			history: slab[w : w+h : w+h],
			curOpen: math.MaxInt64, curNext: math.MinInt64,
			newest: noPeriod, lateMark: math.MinInt64, first: noPeriod,
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
	if cap(a.parents) < a.live {
		d := make([]uint32, len(a.parents), 2*a.live+16)
		copy(d, a.parents)
		a.parents = d
	}
}
