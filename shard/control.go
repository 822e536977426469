package shard

import (
	"errors"
	"math"

	"github.com/klagg/klagg/parse"
)

// Op is an in-band command for the Aggregator that owns a symbol. A command
// travels as a parse.Trade with Control set (see Command), through the same
// ring as the symbol's trades, so it takes effect exactly between the trades
// handed over before it and those after it: a retire never overtakes the
// symbol's last trades, a hold never comes after the trades it protects.
type Op uint8

// Commands. Fields of the carrying parse.Trade: Symbol, and At (TradeTime) and
// Until (EventTime) where noted.
const (
	// OpHold: trades of the symbol made at or after At may still come (a gap
	// being filled, a connection being re-established): none of its klines with
	// CloseTime >= At closes until the hold is lifted by OpHold with At =
	// math.MaxInt64. Advance and Flush respect holds; only a trade running past a
	// symbol's window of open periods closes them early, as without a hold.
	OpHold Op = iota + 1
	// OpMarkGap: trades of the symbol made in [At, Until] are lost for good:
	// every kline overlapping that span gets FlagGap, closed ones included (they
	// are emitted again, or marked, see Kline.Mark).
	OpMarkGap
	// OpRetire: the symbol was delisted. Its klines with trades still close by
	// the watermark (with the empty ones between them), then its state is freed
	// and no empty klines follow. A tombstone keeps its applied ids and how far
	// its klines were written, so a stray trade later is a duplicate or a late
	// trade, never a new kline over one already written; a trade for a new
	// period (a relisting) starts the symbol afresh.
	OpRetire
	// OpPartial: trades of the symbol made before At may be missing (klagg
	// started, or followed the symbol, after they were made). When the symbol's
	// state starts with its next trade, the first kline of every interval that
	// opens before At gets FlagPartial.
	OpPartial
	numOps
)

// Command returns the in-band record of op for symbol.
func Command(op Op, symbol uint32, at, until int64) parse.Trade {
	return parse.Trade{Control: uint8(op), Symbol: symbol, TradeTime: at, EventTime: until}
}

// Hold returns the OpHold record holding symbol's klines from at on;
// Hold(symbol, math.MaxInt64) lifts the hold.
func Hold(symbol uint32, at int64) parse.Trade { return Command(OpHold, symbol, at, 0) }

// NoHold is the value of At that lifts a hold.
const NoHold = math.MaxInt64

// ErrTooLate is the reason Emitter.Dropped gives for a trade into a closed
// kline that is no longer kept for corrections (or that precedes the
// symbol's first kline).
var ErrTooLate = errors.New("trade too late: its kline closed and left the correction history")

// control executes one in-band command.
func (a *Aggregator) control(t *parse.Trade) {
	a.c.Commands++
	switch Op(t.Control) {
	case OpHold:
		a.hold(t.Symbol, t.TradeTime)
	case OpMarkGap:
		a.markGap(t.Symbol, t.TradeTime, t.EventTime)
	case OpRetire:
		a.retire(t.Symbol)
	case OpPartial:
		a.partial(t.Symbol, t.TradeTime)
	default:
		a.c.BadCommands++
	}
}

// hold sets or lifts a symbol's hold; lifting closes at once what the
// watermark has passed meanwhile.
func (a *Aggregator) hold(symbol uint32, at int64) {
	st := a.state(symbol)
	if st == nil {
		if at != NoHold {
			a.pendingHold(symbol, at)
		} else if int(symbol) < len(a.holds) {
			a.holds[symbol] = 0
		}
		return
	}
	if at == NoHold {
		st.hold = NoHold
		if closed := a.ivs[a.base].closed; closed != math.MinInt64 { // the watermark closed something
			a.closeThrough(st, &st.series[a.base], closed-1)
		}
		return
	}
	st.hold = at
}

// pendingHold remembers a hold for a symbol without state yet, for its first trade.
func (a *Aggregator) pendingHold(symbol uint32, at int64) {
	if int(symbol) >= len(a.holds) {
		a.holds = append(a.holds, make([]int64, int(symbol)+1-len(a.holds))...)
	}
	a.holds[symbol] = at
}

func (a *Aggregator) partial(symbol uint32, since int64) {
	if int(symbol) >= len(a.partials) {
		a.partials = append(a.partials, make([]int64, int(symbol)+1-len(a.partials))...)
	}
	a.partials[symbol] = since
}

func (a *Aggregator) state(symbol uint32) *symbolState {
	if int(symbol) >= len(a.symbols) {
		return nil
	}
	return a.symbols[symbol]
}

// markGap flags the symbol's klines overlapping trade times [from, to]: open
// ones in place (a parent's accumulator too: the children it folded already
// carry no flag), closed ones in history emitted again, older ones as marks.
func (a *Aggregator) markGap(symbol uint32, from, to int64) {
	st := a.state(symbol)
	if st == nil || from > to {
		a.c.Marks++ // nothing held: the gap is known only to the caller's log
		return
	}
	for i := range st.series {
		s := &st.series[i]
		iv := &a.ivs[i].iv
		if s.first == noPeriod {
			continue // not started: no kline to flag
		}
		pFrom, pTo := max(iv.Period(from), s.first), iv.Period(to)
		w := int64(len(s.window))
		for q := max(pFrom, s.next); q <= pTo && q < s.next+w; q++ {
			var e *entry
			if i == a.base {
				if e = &s.window[floorMod(q, w)]; !e.live {
					a.initEntry(e, st, i, q)
				}
			} else {
				e = a.parentEntry(st, s, i, q)
			}
			e.k.Flags |= FlagGap
		}
		h := int64(len(s.history))
		for q := max(pFrom, s.next-h); q <= pTo && q < s.next; q++ {
			e := &s.history[floorMod(q, h)]
			if e.live && e.period == q && e.k.Flags&FlagGap == 0 {
				e.k.Flags |= FlagGap | FlagCorrected
				a.emitClosed(i, &e.k)
			}
		}
		for q := pFrom; q <= pTo && q < s.next-h; q++ {
			a.mark(st.sym, i, q, FlagGap)
		}
	}
}

// mark emits a flag-only event for a closed kline no longer kept.
func (a *Aggregator) mark(symbol uint32, i int, p int64, f Flags) {
	if i >= a.shown {
		return // the hidden base: its parents get their own marks
	}
	iv := &a.ivs[i].iv
	k := Kline{
		Symbol: symbol, Interval: uint8(i), Flags: f, Closed: true, Mark: true,
		OpenTime: iv.periodOpen(p), CloseTime: iv.periodOpen(p+1) - 1,
		FirstTradeID: -1, LastTradeID: -1, FirstAggID: -1, LastAggID: -1,
	}
	a.c.Marks++
	a.out.Closed(&k)
}

// retire marks a symbol delisted; see OpRetire.
func (a *Aggregator) retire(symbol uint32) {
	st := a.state(symbol)
	if st == nil {
		return
	}
	if !st.retired {
		st.retired = true
		a.retired++
	}
	a.freeRetired()
}

// tomb is what is left of a retired symbol once its klines are all written.
type tomb struct {
	ids idRuns
	// written is the open time of the first period not written in some
	// interval: a trade before it would land in a kline already written.
	written int64
}

// applyTomb handles a trade of a symbol retired and freed; it reports whether
// the trade was consumed (duplicate or too late).
func (a *Aggregator) applyTomb(t *parse.Trade) bool {
	tb, ok := a.tombs[t.Symbol]
	if !ok {
		return false
	}
	if tb.ids.contains(t.AggID) {
		a.c.Duplicates++
		return true
	}
	if t.TradeTime < tb.written {
		a.tooLate(t)
		for i := range a.ivs {
			a.mark(t.Symbol, i, a.ivs[i].iv.Period(t.TradeTime), FlagLate)
		}
		return true
	}
	delete(a.tombs, t.Symbol) // listed again: a new life
	return false
}

func (a *Aggregator) tooLate(t *parse.Trade) {
	a.c.TooLate++
	a.out.Dropped(t, ErrTooLate)
}
