package shard

import (
	"fmt"
	"slices"
)

// The roll-up: trades update the base interval only (the finest grid every
// configured interval is made of: 1m for Binance's futures set, 1s for spot's);
// every longer interval is the exact merge of its child interval's klines (the
// longest configured interval that tiles it: 1M from 1d, 1d from 12h, 5m from
// 1m), folded as each child kline closes, and a parent period closes the moment
// its last child period does.

// plan gives each interval its child and parents and returns the base, adding
// a hidden base to ivs when no configured interval tiles every other.
func plan(ivs []intervalState) ([]intervalState, int, error) {
	g := int64(0)
	months := false
	for i := range ivs {
		iv := &ivs[i].iv
		if iv.Months > 0 {
			months = true
			continue
		}
		g = gcd(g, iv.Millis)
		if iv.Origin != 0 {
			g = gcd(g, iv.Origin)
		}
	}
	if months {
		g = gcd(g, msDay)
	}
	base := -1
	for i := range ivs {
		if iv := &ivs[i].iv; iv.Months == 0 && iv.Millis == g && iv.Origin%g == 0 {
			base = i
		}
	}
	if base < 0 {
		// No configured interval tiles the others (3m and 5m): a hidden one does.
		ivs = append(ivs, intervalState{iv: Interval{Name: fmt.Sprintf("%dms", g), Millis: g}, hidden: true})
		base = len(ivs) - 1
	}
	for i := range ivs {
		ivs[i].child = -1
		ivs[i].parents = nil
	}
	for p := range ivs {
		if p == base {
			continue
		}
		best := -1
		for c := range ivs {
			if c != p && tiles(ivs[c].iv, ivs[p].iv) && (best < 0 || length(ivs[c].iv) > length(ivs[best].iv)) {
				best = c
			}
		}
		if best < 0 {
			return nil, 0, fmt.Errorf("BUG: no interval tiles %s, not even the base %s", ivs[p].iv.Name, ivs[base].iv.Name)
		}
		ivs[p].child = best
		ivs[best].parents = append(ivs[best].parents, p)
		ivs[p].ratio = ratio(ivs[p].iv, ivs[best].iv)
	}
	return ivs, base, nil
}

// order returns the interval indices children first (by length, then index).
func order(ivs []intervalState) []int {
	o := make([]int, len(ivs))
	for i := range o {
		o[i] = i
	}
	slices.SortStableFunc(o, func(a, b int) int {
		la, lb := length(ivs[a].iv), length(ivs[b].iv)
		switch {
		case la < lb:
			return -1
		case la > lb:
			return 1
		}
		return 0
	})
	return o
}

// tiles reports whether every period boundary of p is one of c, c shorter.
func tiles(c, p Interval) bool {
	if length(c) >= length(p) {
		return false
	}
	switch {
	case c.Months > 0 && p.Months > 0:
		return p.Months%c.Months == 0
	case c.Months > 0:
		return false
	case p.Months > 0:
		// Months open at midnight: c must have a boundary at every midnight.
		return msDay%c.Millis == 0 && c.Origin%c.Millis == 0
	}
	return p.Millis%c.Millis == 0 && floorMod(p.Origin-c.Origin, c.Millis) == 0
}

// length orders intervals; a month counts as its shortest.
func length(iv Interval) int64 {
	if iv.Months > 0 {
		return minMonth * int64(iv.Months)
	}
	return iv.Millis
}

// ratio is the most child periods one parent period holds.
func ratio(p, c Interval) int {
	switch {
	case p.Months > 0 && c.Months > 0:
		return p.Months / c.Months
	case p.Months > 0:
		return int((31*msDay*int64(p.Months) + c.Millis - 1) / c.Millis)
	}
	return int(p.Millis / c.Millis)
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// merge folds src, a child kline, into dst, a parent's accumulator: the
// extremes, exact sums and counts, and Open and Close by aggTrade id, as add
// does for trades (a trade's time may run behind a later id's); without ids
// (a REST kline) children fold in time order. Quality flags carry over. An
// empty child only carries the previous close into a parent with no trade yet.
func (a *Aggregator) merge(dst, src *Kline) {
	if src.Flags&^dst.Flags&FlagOverflow != 0 {
		a.c.Overflows++ // a parent got the flag: it counts as its own
	}
	dst.Flags |= src.Flags & (QualityFlags | FlagREST | FlagQuiet)
	if !hasTrades(src) {
		if !hasTrades(dst) {
			c := src.Close
			dst.Open, dst.High, dst.Low, dst.Close = c, c, c, c
		}
		return
	}
	if !hasTrades(dst) {
		dst.Open, dst.High, dst.Low, dst.Close = src.Open, src.High, src.Low, src.Close
		dst.FirstAggID, dst.FirstTradeID = src.FirstAggID, src.FirstTradeID
		dst.LastAggID, dst.LastTradeID = src.LastAggID, src.LastTradeID
	} else {
		dst.High = max(dst.High, src.High)
		dst.Low = min(dst.Low, src.Low)
		byID := src.FirstAggID >= 0 && dst.FirstAggID >= 0
		if !byID || src.LastAggID > dst.LastAggID {
			dst.Close = src.Close
			if src.LastAggID >= 0 {
				dst.LastAggID, dst.LastTradeID = src.LastAggID, src.LastTradeID
			}
		}
		if byID && src.FirstAggID < dst.FirstAggID || dst.FirstAggID < 0 {
			if byID {
				dst.Open = src.Open
			}
			dst.FirstAggID, dst.FirstTradeID = src.FirstAggID, src.FirstTradeID
		}
	}
	dst.Count += src.Count
	var o1, o2, o3, o4 bool
	dst.Volume, o1 = dst.Volume.Add(src.Volume)
	dst.QuoteVolume, o2 = dst.QuoteVolume.Add(src.QuoteVolume)
	dst.TakerBuyVolume, o3 = dst.TakerBuyVolume.Add(src.TakerBuyVolume)
	dst.TakerBuyQuoteVolume, o4 = dst.TakerBuyQuoteVolume.Add(src.TakerBuyQuoteVolume)
	if o1 || o2 || o3 || o4 || dst.Count < 0 {
		a.overflow(dst, o1, o2, o3, o4)
	}
}

// hasTrades reports whether k holds at least one trade (or a REST kline's).
func hasTrades(k *Kline) bool { return k.Count > 0 || k.FirstAggID >= 0 }

// childClosed folds a child kline that just closed (k nil: its period was
// skipped, no kline) into the accumulator of each parent of interval c, and
// closes a parent period whose last child it was, which goes on up.
func (a *Aggregator) childClosed(st *symbolState, c int, cp int64, k *Kline) {
	civ := &a.ivs[c].iv
	open := civ.periodOpen(cp)
	for _, p := range a.ivs[c].parents {
		ps := &st.series[p]
		piv := &a.ivs[p].iv
		if ps.first == noPeriod {
			continue // started later (restored without it): nothing to fold into
		}
		pp := piv.Period(open)
		if pp < ps.next {
			continue // closed already (a delisted symbol's parents skip ahead)
		}
		for ps.next < pp { // periods whose every child was skipped
			a.skipParent(st, ps, p)
		}
		e := a.parentEntry(st, ps, p, pp)
		if k != nil {
			a.merge(&e.k, k)
			e.folded = true
		}
		if civ.periodOpen(cp+1) >= piv.periodOpen(pp+1) {
			a.closeParent(st, ps, p)
		}
	}
}

// parentEntry returns the window entry (the accumulator) of parent period pp.
func (a *Aggregator) parentEntry(st *symbolState, ps *series, p int, pp int64) *entry {
	w := int64(len(ps.window))
	if pp >= ps.next+w {
		panic(fmt.Sprintf("BUG: %s period %d beyond the window [%d, %d)", a.ivs[p].iv.Name, pp, ps.next, ps.next+w))
	}
	e := &ps.window[floorMod(pp, w)]
	if !e.live {
		a.initEntry(e, st, p, pp)
		if e.k.OpenTime < st.partialSince && pp == ps.first {
			e.k.Flags |= FlagPartial
		}
	} else if e.period != pp {
		panic(fmt.Sprintf("BUG: %s window slot of period %d holds period %d", a.ivs[p].iv.Name, pp, e.period))
	}
	return e
}

// closeParent closes the parent period ps.next, all of whose children closed.
func (a *Aggregator) closeParent(st *symbolState, ps *series, p int) {
	q := ps.next
	e := &ps.window[floorMod(q, int64(len(ps.window)))]
	if !e.live || e.period != q || !e.folded {
		a.skipParent(st, ps, p)
		return
	}
	if !hasTrades(&e.k) {
		// The close before it is the parent's own: the last trade of its
		// previous period by id may not be in that period's last child.
		if q > ps.first {
			c := ps.lastClose
			e.k.Open, e.k.High, e.k.Low, e.k.Close = c, c, c, c
		}
		e.k.Flags |= FlagEmpty
		a.c.EmptyKlines++
	} else {
		ps.newest = max(ps.newest, q)
	}
	a.finish(st, ps, p, e, q)
}

// skipParent passes a parent period none of whose children has a kline.
func (a *Aggregator) skipParent(st *symbolState, ps *series, p int) {
	q := ps.next
	if e := &ps.window[floorMod(q, int64(len(ps.window)))]; e.live && e.period == q {
		e.live, e.dirty = false, false
	}
	ps.next = q + 1
	if !st.retired {
		a.c.QuietSkipped++
	}
	a.childClosed(st, p, q, nil)
}

// openFold returns the running kline of parent interval p's open period pp:
// its accumulator (closed children) and its open children, folded. Children
// opening after limit (the base's newest period) hold nothing yet.
func (a *Aggregator) openFold(st *symbolState, p int, pp, limit int64) (Kline, bool) {
	ps := &st.series[p]
	piv := &a.ivs[p].iv
	var k Kline
	if e := &ps.window[floorMod(pp, int64(len(ps.window)))]; e.live && e.period == pp {
		k = e.k
	} else {
		k = Kline{Symbol: st.sym, Interval: uint8(p), OpenTime: piv.periodOpen(pp), CloseTime: piv.periodOpen(pp+1) - 1,
			FirstTradeID: -1, LastTradeID: -1, FirstAggID: -1, LastAggID: -1}
		if pp == ps.first && k.OpenTime < st.partialSince {
			k.Flags |= FlagPartial
		}
	}
	c := a.ivs[p].child
	cs := &st.series[c]
	civ := &a.ivs[c].iv
	for cp := max(cs.next, civ.Period(k.OpenTime)); ; cp++ {
		open := civ.periodOpen(cp)
		if open > k.CloseTime || open > limit {
			break
		}
		if c == a.base {
			if e := &cs.window[floorMod(cp, int64(len(cs.window)))]; e.live && e.period == cp && hasTrades(&e.k) {
				a.merge(&k, &e.k)
			}
		} else if f := &a.folds[c]; f.valid && f.period == cp {
			if f.ok {
				a.merge(&k, &f.k)
			}
		} else if ck, ok := a.openFold(st, c, cp, limit); ok {
			a.merge(&k, &ck)
		}
	}
	k.Closed = false
	ok := hasTrades(&k)
	a.folds[p] = fold{k: k, period: pp, ok: ok, valid: true}
	return k, ok
}

// fold is an open period's running kline computed during one symbol's
// parent updates: its parents, computed after it, reuse it.
type fold struct {
	k         Kline
	period    int64
	ok, valid bool
}
