package feed

import (
	"math"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// seqState is where a symbol's aggTrade sequence stands; see the transition
// table in doc.go.
type seqState uint8

const (
	stateIdle       seqState = iota // not followed
	stateFresh                      // followed, no trade yet: the first one starts it (partial klines)
	stateAnchor                     // trades since a time come from REST first (a listing; a first trade maybe missed)
	stateLive                       // in sequence: every id up to last handed over, none missing
	stateUnverified                 // trades after last may have been missed (a connection was lost)
	stateGap                        // ids [from, to] missing; later trades held; REST fills
	numStates
)

var stateNames = [numStates]string{"idle", "fresh", "anchor", "live", "unverified", "gap"}

func (s seqState) String() string { return stateNames[s] }

// fetchKind is what a sequence asks REST for.
type fetchKind uint8

const (
	fetchFill   fetchKind = iota + 1 // aggTrades from an id
	fetchSince                       // aggTrades from a time (a listing)
	fetchNewest                      // the newest aggTrade: what REST has at all
	numFetchKinds
)

// fetch is a REST request of one symbol's sequence; gen ties the result to the
// gap that asked, so an answer for a gap given up meanwhile is ignored.
type fetch struct {
	kind  fetchKind
	sym   uint32
	from  int64 // fetchFill: first id; fetchSince: start time
	gen   uint64
	prio  priority
	limit int
}

// fetched is REST's answer to a fetch.
type fetched struct {
	fetch
	trades []parse.Trade
	err    error
}

// env is what a sequence acts on: the slot in the daemon, a fake in tests. All
// of it runs on the slot's goroutine.
type env interface {
	// handOver routes a trade to the pipeline, in id order per symbol.
	handOver(t *parse.Trade)
	// command routes an in-band command (hold, mark gap, partial, retire).
	command(c parse.Trade)
	// request queues a REST request; its answer comes back through onFetched.
	request(f fetch)
	// wantTicker asks for a ticker read soon (onTicker gets it).
	wantTicker()
	// now is the local monotonic clock (retries, delays).
	now() time.Time
	// exchangeNow is the exchange's clock in Unix ms (math.MinInt64: unknown).
	exchangeNow() int64
	// deliveringSince is the exchange time since when the connection that
	// delivered t surely delivers every trade of its symbols.
	deliveringSince(t *parse.Trade) int64
	stats() *counters
	logger() *zap.Logger
	config() *Config
}

// gap is the missing part of a sequence in stateGap (and the pending anchor of
// stateAnchor).
type gap struct {
	from int64 // first missing aggTrade id
	// to is the last missing id when known: the id before the first held trade,
	// or math.MaxInt64 when only toTrade bounds the gap (a ticker said so).
	to int64
	// toTrade, when >= 0, is a raw trade id the exchange has: the gap lasts at
	// least until a trade with LastID >= toTrade is handed over.
	toTrade int64
	held    []parse.Trade // trades after the gap, sorted by AggID
	opened  time.Time
	pending bool // a request is queued or in flight
	retryAt time.Time
	tries   int // short answers in a row (REST lags, or a held id is bogus)
	errs    int // failed requests in a row
	// probing: the last answer was short; the newest trade REST has decides
	// whether REST lags, the ids are gone, or the held trade is bogus.
	probing bool
	// empty: the last fill answer had no trade at or after from.
	empty bool
	// trailing: the gap lasts until REST has nothing more (a short page): the
	// last trades of a symbol no longer followed, which no ticker read bounded.
	trailing bool
}

// sequence is the state machine of one symbol's aggTrade ids on one slot.
type sequence struct {
	sym      uint32
	name     string
	state    seqState
	last     int64 // aggTrade id of the last trade handed over (Live, Unverified, Gap)
	lastTID  int64 // its raw LastID: what the 24 h ticker reports
	lastTime int64 // its trade time
	since    int64 // Fresh, Listing: exchange time since when the symbol is followed
	gen      uint64
	gap      gap
	// afterGap is the state the gap resolves to: Live, or Unverified when the
	// connection was lost while the gap was open.
	afterGap seqState
	// hold is the hold sent to the shard (shard.NoHold: none), held since holdAt.
	// holdExpired: MaxHold lifted it while trades were still missing, so klines
	// closed without them (corrections follow, or a flag at exit).
	hold        int64
	holdAt      time.Time
	holdExpired bool
	// connectedAt is when the connection carrying the symbol took effect (zero
	// while none does): a ticker read sent Config.TickerLag after it can verify
	// that nothing was missed before.
	connectedAt time.Time
	// suspect is a trade id the ticker reported beyond lastTID, at suspectAt:
	// if the stream does not deliver it within Config.SuspectDelay, it is a gap.
	suspect   int64
	suspectAt time.Time
	leaving   bool // unsubscribed: retire once nothing is pending
	leftAt    time.Time
	// Fresh: baseTID is the symbol's last raw trade id by a ticker read sent at
	// baseAt, after the symbol's connection took effect: a first trade whose
	// FirstID is baseTID+1 proves that nothing was missed before it. freshLost:
	// a connection was lost before the first trade.
	baseTID   int64
	baseAt    time.Time
	freshLost bool
	// partialFirst: the first trade an anchor hands over is preceded by
	// OpPartial(since) (a symbol followed since start, not a listing).
	partialFirst bool
	// handed counts the trades handed over, the first one's id firstHanded
	// (a test's account per symbol).
	handed, firstHanded int64
}

func newSequence(sym uint32, name string) *sequence {
	return &sequence{sym: sym, name: name, hold: shard.NoHold, suspect: -1, baseTID: -1}
}

// follow starts following the symbol from exchange time since. listed means
// it was listed while running: its trades since then come from REST, so its
// first klines are whole; otherwise the first trade starts it (partial).
func (q *sequence) follow(e env, since int64, listed bool) {
	q.leaving = false
	if q.state != stateIdle {
		return
	}
	q.since = since
	q.baseTID, q.freshLost = -1, false
	if listed && since != math.MinInt64 {
		q.anchor(e, nil, false)
		return
	}
	q.state = stateFresh
}

// Resume is where a symbol's aggTrades pick up after a restart: every trade up
// to Last (aggTrade id; LastTradeID is its raw "l", LastTime its time) was
// applied and saved, none after.
type Resume struct {
	Last, LastTradeID, LastTime int64
}

// resumeFrom starts following a symbol a store saved: what traded while klagg
// was down is unverified until the stream or the ticker says, and fetched from
// REST (the shard skips what each interval had).
func (q *sequence) resumeFrom(e env, r Resume) {
	q.leaving = false
	if q.state != stateIdle {
		return
	}
	q.last, q.lastTID, q.lastTime = r.Last, r.LastTradeID, r.LastTime
	q.state = stateUnverified
	q.setHold(e, q.lastTime)
	e.stats().resumed.Add(1)
}

// anchor moves to stateAnchor: REST serves the symbol's trades since q.since
// before the stream's (first, if not nil, is held). partial marks the first
// klines partial before since (a symbol followed since start; a listing has no
// trades before since).
func (q *sequence) anchor(e env, first *parse.Trade, partial bool) {
	q.state = stateAnchor
	q.gen++
	q.gap = gap{from: 0, to: math.MaxInt64, toTrade: -1, opened: e.now()}
	q.partialFirst = partial
	if first != nil {
		q.gap.held = append(q.gap.held, *first)
		e.stats().held.Add(1)
	}
	q.setHold(e, q.since)
	q.ask(e)
}

// unfollow stops following the symbol (unsubscribed, delisted): once nothing is
// pending its shard is told to retire it. A gap still being filled is filled
// first (REST serves a delisted symbol's recent trades), and a symbol that
// traded is retired only once a ticker read sent after now shows that its last
// trades were received (a trailing trade lost in flight is fetched first), so
// nothing is lost.
func (q *sequence) unfollow(e env) {
	if q.leaving || q.state == stateIdle {
		return
	}
	q.leaving, q.leftAt = true, e.now()
	switch q.state {
	case stateFresh:
		q.retire(e)
	case stateLive, stateUnverified:
		// No kline after its last trade closes while its last word is awaited.
		q.setHold(e, q.lastTime)
		e.wantTicker()
	}
}

// retire ends the symbol: the shard is told first, then the hold is lifted,
// so no empty kline follows its last trade.
func (q *sequence) retire(e env) {
	if q.state != stateFresh {
		e.command(shard.Command(shard.OpRetire, q.sym, 0, 0))
	}
	q.setHold(e, shard.NoHold)
	q.state, q.leaving = stateIdle, false
	q.gen++
	q.suspect = -1
}

// onTrade handles a trade from the stream.
func (q *sequence) onTrade(e env, t *parse.Trade) {
	c := e.stats()
	switch q.state {
	case stateIdle:
		c.unwanted.Add(1)
		return
	case stateFresh:
		// The first trade. Trades before since may be missing (its klines
		// opening before since are partial); trades after since must not be:
		// REST is asked since since when a baseline shows a hole, else the
		// stream is trusted from when it surely delivered. since, when the
		// subscription was made by our clock, may be before the exchange put
		// it into effect (a baseline's continuity proves nothing of the trades
		// before the read either).
		continuous := q.baseTID >= 0 && t.FirstID == q.baseTID+1
		missed := (q.baseTID >= 0 && t.FirstID > q.baseTID+1) || (q.freshLost && !continuous)
		if missed && q.since != math.MinInt64 {
			e.stats().freshAnchors.Add(1)
			q.anchor(e, t, true)
			return
		}
		if q.since != math.MinInt64 {
			q.since = max(q.since, e.deliveringSince(t))
		}
		q.sendPartial(e, t)
		q.state = stateLive
		q.pass(e, t)
		q.setHold(e, shard.NoHold)
	case stateLive, stateUnverified:
		switch {
		case t.AggID == q.last+1:
			if q.state == stateUnverified {
				// The stream goes on right after the last trade: nothing was missed.
				q.state = stateLive
				c.verifiedByStream.Add(1)
				q.setHold(e, shard.NoHold)
			}
			q.pass(e, t)
		case t.AggID <= q.last:
			c.duplicates.Add(1)
		default:
			// Unverified too: the stream is live again, and the gap covers
			// everything missed since the last trade.
			q.openGap(e, q.last+1, t.AggID-1, -1, t, stateLive)
		}
	case stateGap, stateAnchor:
		q.holdTrade(e, t)
	}
}

// sendPartial tells the shard that the symbol's trades before since may be
// missing (a start, not a listing), before its first trade t is handed over.
func (q *sequence) sendPartial(e env, t *parse.Trade) {
	at := q.since
	if at == math.MinInt64 {
		at = t.TradeTime + 1
	}
	e.command(shard.Command(shard.OpPartial, q.sym, at, 0))
}

// pass hands a trade over as the next of the sequence.
func (q *sequence) pass(e env, t *parse.Trade) {
	q.last, q.lastTID, q.lastTime = t.AggID, t.LastID, t.TradeTime
	if q.suspect >= 0 && q.lastTID >= q.suspect {
		q.suspect = -1
	}
	e.handOver(t)
	if q.handed++; q.handed == 1 {
		q.firstHanded = t.AggID
	}
	e.stats().handedOver.Add(1)
}

// openGap moves to stateGap: ids [from, to] (or up to raw trade id toTrade) are
// missing; first, if not nil, is held behind them; after is the state the gap
// resolves to. The symbol's klines are held from the last trade handed over,
// and REST is asked.
func (q *sequence) openGap(e env, from, to, toTrade int64, first *parse.Trade, after seqState) {
	c := e.stats()
	c.gapsOpened.Add(1)
	q.afterGap = after
	q.state = stateGap
	q.gen++
	q.gap = gap{from: from, to: to, toTrade: toTrade, opened: e.now()}
	if first != nil {
		q.gap.held = append(q.gap.held, *first)
		c.held.Add(1)
	}
	q.setHold(e, q.lastTime)
	q.ask(e)
}

// holdTrade keeps a stream trade of a symbol in stateGap or stateAnchor.
func (q *sequence) holdTrade(e env, t *parse.Trade) {
	c := e.stats()
	g := &q.gap
	if q.state == stateGap {
		if t.AggID < g.from {
			c.duplicates.Add(1)
			return
		}
		if t.AggID == g.from {
			// The stream itself fills the gap from its start.
			q.pass(e, t)
			g.from++
			q.maybeClose(e)
			return
		}
	}
	i, found := slices.BinarySearchFunc(g.held, t.AggID, func(h parse.Trade, id int64) int {
		switch {
		case h.AggID < id:
			return -1
		case h.AggID > id:
			return 1
		}
		return 0
	})
	if found {
		c.duplicates.Add(1)
		return
	}
	g.held = slices.Insert(g.held, i, *t)
	c.held.Add(1)
	if q.state == stateGap {
		g.to = min(g.to, g.held[0].AggID-1)
	}
}

// maybeClose closes the gap when nothing is missing any more.
func (q *sequence) maybeClose(e env) {
	g := &q.gap
	if q.state != stateGap {
		return
	}
	if len(g.held) > 0 {
		g.to = min(g.to, g.held[0].AggID-1)
	}
	if g.from <= g.to && (g.to != math.MaxInt64 || q.lastTID < g.toTrade) {
		return
	}
	q.closeGap(e)
}

// closeGap ends the gap: the held trades are handed over in order (one may open
// the next gap), and the klines' hold is lifted when the symbol is live again.
func (q *sequence) closeGap(e env) {
	e.stats().gapsClosed.Add(1)
	q.release(e)
}

// release leaves stateGap (or an anchor caught up with the stream) for
// q.afterGap, handing over the held trades in order (one may open the next gap).
func (q *sequence) release(e env) {
	held, trailing := q.gap.held, q.gap.trailing
	next := q.afterGap
	q.state = next
	q.gen++
	q.gap = gap{}
	c := e.stats()
	for i := range held {
		c.held.Add(-1)
		if q.state == stateGap {
			q.holdTrade(e, &held[i]) // a later hole: still held, but kept
			continue
		}
		t := &held[i]
		switch {
		case t.AggID == q.last+1:
			q.pass(e, t)
		case t.AggID <= q.last:
			c.duplicates.Add(1)
		default:
			q.openGap(e, q.last+1, t.AggID-1, -1, nil, next)
			q.holdTrade(e, t)
		}
	}
	switch {
	case q.leaving && q.state == stateLive && trailing:
		q.retire(e) // REST's last page was its last word
	case q.leaving && (q.state == stateLive || q.state == stateUnverified):
		q.setHold(e, q.lastTime)
		e.wantTicker() // its last word: retired once it shows nothing more
	case q.state == stateLive:
		q.setHold(e, shard.NoHold)
	case q.state == stateUnverified:
		q.setHold(e, q.lastTime)
	}
}

// onDisconnect: the connection that carried the symbol was lost (or replaced
// without an overlap). Trades after the last one received may be missing until
// the stream or the ticker says otherwise.
// heard is when the connection last delivered a frame: a baseline read after it
// may have been taken while the connection was already silent, so it is not
// trusted.
func (q *sequence) onDisconnect(e env, heard time.Time) {
	q.connectedAt = time.Time{}
	switch q.state {
	case stateLive:
		q.state = stateUnverified
		q.setHold(e, q.lastTime)
	case stateGap:
		q.afterGap = stateUnverified
	case stateFresh:
		q.freshLost = true
		if q.baseAt.After(heard) {
			q.baseTID = -1
		}
		q.setHold(e, q.since) // its first kline may miss trades until verified
	}
}

// onConnected: a connection carrying the symbol took effect at exchange time at.
func (q *sequence) onConnected(e env, at int64) {
	q.connectedAt = e.now()
	if q.state == stateFresh && q.since == math.MinInt64 {
		q.since = at
	}
}

// onTicker handles a 24 h ticker read sent at sentAt: tradeID is the symbol's
// last raw trade id at the exchange (-1: no trade in 24 h).
func (q *sequence) onTicker(e env, tradeID int64, sentAt time.Time) {
	cfg := e.config()
	// A read taken before the connection was surely in effect says nothing of
	// what the stream delivers.
	effective := !q.connectedAt.IsZero() && !sentAt.Before(q.connectedAt.Add(cfg.TickerLag))
	if q.leaving && (q.state == stateLive || q.state == stateUnverified) && !sentAt.Before(q.leftAt) {
		// The last word on a symbol no longer followed: retire it if its last
		// trades were all received, else fetch them first.
		if tradeID <= q.lastTID {
			q.retire(e)
		} else {
			q.openGap(e, q.last+1, math.MaxInt64, tradeID, nil, stateLive)
		}
		return
	}
	switch q.state {
	case stateFresh:
		if !effective {
			return
		}
		switch {
		case !q.freshLost:
			q.baseTID, q.baseAt = tradeID, sentAt
		case q.baseTID >= 0 && tradeID <= q.baseTID:
			// Nothing traded since the baseline, which was taken while the
			// symbol was followed: nothing was missed while down.
			q.freshLost = false
			e.stats().verifiedByTicker.Add(1)
			q.setHold(e, shard.NoHold)
		case q.since != math.MinInt64:
			e.stats().freshAnchors.Add(1)
			q.anchor(e, nil, true)
		}
	case stateUnverified:
		if !effective {
			return
		}
		switch {
		case tradeID <= q.lastTID:
			// Nothing traded after the last trade received (an older id means
			// the ticker lags; the stream has the newest anyway).
			q.state = stateLive
			e.stats().verifiedByTicker.Add(1)
			q.setHold(e, shard.NoHold)
		default:
			// Read after the new connection took effect: up to tradeID is all
			// that can be missing.
			q.openGap(e, q.last+1, math.MaxInt64, tradeID, nil, stateLive)
		}
	case stateLive:
		if tradeID > q.lastTID && q.suspect < 0 {
			q.suspect, q.suspectAt = tradeID, e.now()
		}
	}
}

// onTick handles time: retries, suspects turning into gaps, holds expiring.
func (q *sequence) onTick(e env) {
	now := e.now()
	cfg := e.config()
	switch q.state {
	case stateLive:
		if q.suspect >= 0 && now.Sub(q.suspectAt) >= cfg.SuspectDelay {
			// The ticker saw trades the stream has not delivered since: a
			// trailing gap (a quiet symbol's last trades lost in flight).
			s := q.suspect
			q.suspect = -1
			e.stats().trailingGaps.Add(1)
			q.openGap(e, q.last+1, math.MaxInt64, s, nil, stateLive)
		}
	case stateGap, stateAnchor:
		if !q.gap.pending && !now.Before(q.gap.retryAt) {
			q.ask(e)
		}
	}
	if q.leaving && (q.state == stateLive || q.state == stateUnverified) && now.Sub(q.leftAt) >= 2*cfg.Verify+cfg.SuspectDelay {
		// No ticker read came in time (a binding REST budget delays the
		// shared read): REST itself says whether trades followed the last
		// one received, one page for a symbol that stopped trading.
		e.stats().lastWordREST.Add(1)
		e.logger().Info("no ticker read verified the last trades of a symbol no longer followed; fetching them from REST",
			zap.String("symbol", q.name), zap.Int64("from_id", q.last+1))
		q.openGap(e, q.last+1, math.MaxInt64, math.MaxInt64, nil, stateLive)
		q.gap.trailing = true
		return
	}
	if q.hold != shard.NoHold && cfg.MaxHold > 0 && now.Sub(q.holdAt) >= cfg.MaxHold {
		// Klines cannot wait for ever: they close, and what REST brings later
		// arrives as corrections (or, past the history, flags them late).
		e.stats().holdsExpired.Add(1)
		e.logger().Warn("holding klines for missing trades too long; closing them, corrections will follow",
			zap.String("symbol", q.name), zap.String("state", q.state.String()), zap.Duration("held", now.Sub(q.holdAt)))
		q.sendHold(e, shard.NoHold)
		q.holdExpired = true
	}
}

// ask queues the REST request the state needs, if none is pending.
func (q *sequence) ask(e env) {
	g := &q.gap
	if g.pending {
		return
	}
	g.pending = true
	f := fetch{sym: q.sym, gen: q.gen, prio: prioFill, limit: 1000}
	switch {
	case g.probing:
		f.kind, f.limit = fetchNewest, 1
	case q.state == stateAnchor && q.last == 0:
		f.kind, f.from, f.prio = fetchSince, q.since, prioListing
	case q.state == stateAnchor:
		f.kind, f.from, f.prio = fetchFill, q.last+1, prioListing
	default:
		f.kind, f.from = fetchFill, g.from
	}
	e.request(f)
}

// lastWordPatience is how long REST may keep failing to give a symbol no
// longer followed its last word (and FillTries reads at least) before it is
// retired as it stands.
const lastWordPatience = time.Minute

// onFetched handles REST's answer to a request of this sequence.
func (q *sequence) onFetched(e env, r *fetched) {
	if r.gen != q.gen || (q.state != stateGap && q.state != stateAnchor) {
		return // the gap it was for is gone
	}
	g := &q.gap
	g.pending = false
	c := e.stats()
	cfg := e.config()
	if r.err != nil {
		g.errs++
		c.fetchErrors.Add(1)
		if g.trailing && g.errs >= cfg.FillTries && e.now().Sub(g.opened) >= lastWordPatience {
			// REST will not say either (a symbol it no longer knows): retired
			// as it stands, not fetched for ever at 20 weight a try.
			c.lastWordUnknown.Add(1)
			e.logger().Warn("cannot read the last trades of a symbol no longer followed; retiring it as it stands",
				zap.String("symbol", q.name), zap.Int64("from_id", g.from), zap.Int("attempts", g.errs), zap.Error(r.err))
			q.closeGap(e)
			return
		}
		backoff := min(time.Duration(g.errs)*200*time.Millisecond, 10*time.Second)
		g.retryAt = e.now().Add(backoff)
		if g.errs == 1 || g.errs%10 == 0 {
			e.logger().Warn("cannot read missing trades from REST yet; retrying", zap.String("symbol", q.name),
				zap.Int64("from_id", g.from), zap.Int("attempt", g.errs), zap.Error(r.err))
		}
		return
	}
	g.errs = 0
	if r.kind == fetchNewest {
		g.probing = false
		q.probed(e, r.trades)
		return
	}
	if q.state == stateAnchor {
		q.anchored(e, r)
		return
	}
	for i := range r.trades {
		t := &r.trades[i]
		if q.state != stateGap || t.AggID > g.to {
			break
		}
		if t.AggID < g.from {
			continue
		}
		if t.AggID > g.from {
			// REST no longer serves [from, t.AggID-1]: those trades are lost.
			q.lost(e, t.AggID-1, t.TradeTime, nil)
		}
		q.pass(e, t)
		c.filled.Add(1)
		g.from = t.AggID + 1
		if q.lastTID >= g.toTrade && g.to == math.MaxInt64 {
			break
		}
	}
	if q.state != stateGap {
		return
	}
	q.maybeClose(e)
	if q.state != stateGap {
		return
	}
	if len(r.trades) == r.limit {
		q.ask(e) // more pages
		return
	}
	if g.trailing {
		q.closeGap(e) // REST has nothing after: the symbol's last word
		return
	}
	g.empty = len(r.trades) == 0 || r.trades[len(r.trades)-1].AggID < g.from-1
	// A short answer: REST has not got the rest (yet), or it never will.
	g.probing = true
	g.tries++
	g.retryAt = e.now().Add(min(time.Duration(g.tries)*cfg.FillRetry, 5*time.Second))
	if g.tries == 1 {
		q.ask(e) // ask what REST has at all, at once
	}
}

// probed decides on a short fill with the newest trade REST has.
func (q *sequence) probed(e env, newest []parse.Trade) {
	g := &q.gap
	cfg := e.config()
	if len(newest) == 1 && newest[0].AggID >= g.from {
		// REST has newer trades than the gap's start but returned none from
		// it: the ids are no longer served (or came meanwhile: ask again, once).
		if g.empty && g.tries >= 2 {
			q.lost(e, min(g.to, newest[0].AggID), newest[0].TradeTime, nil)
			q.maybeClose(e)
			if q.state == stateGap && g.to == math.MaxInt64 {
				q.closeGap(e) // the ticker's bound cannot be reached
			}
		}
		return
	}
	// REST's newest trade is before the gap: REST lags behind the stream, or
	// the trade that opened the gap carries an id nobody will confirm.
	if g.tries < cfg.FillTries || e.now().Sub(g.opened) < cfg.BogusAfter {
		return // retry at retryAt
	}
	if len(g.held) > 0 {
		b := g.held[0]
		g.held = g.held[1:]
		c := e.stats()
		c.held.Add(-1)
		c.bogus.Add(1)
		e.logger().Warn("dropping a trade whose aggTrade id REST never confirmed",
			zap.String("symbol", q.name), zap.Int64("agg_id", b.AggID), zap.Int64("expected_from", g.from),
			zap.Int64("trade_time", b.TradeTime), zap.Int("tries", g.tries))
		g.to, g.tries = math.MaxInt64, 0
		if len(g.held) > 0 {
			g.to = g.held[0].AggID - 1
		} else if g.toTrade < 0 {
			g.to = g.from - 1 // nothing is known to be missing any more
		}
		q.maybeClose(e)
		return
	}
	// Only the ticker said trades were missing, and REST does not have them.
	e.stats().tickerUnconfirmed.Add(1)
	q.closeGap(e)
}

// lost gives up trades [from, upTo] of the gap: counted, logged and flagged on
// the klines (between the last trade handed over and until, exchange time).
func (q *sequence) lost(e env, upTo, until int64, err error) {
	g := &q.gap
	n := upTo - g.from + 1
	if n <= 0 {
		return
	}
	c := e.stats()
	c.gapsUnfillable.Add(1)
	c.tradesLost.Add(uint64(n))
	e.logger().Error("trades lost: REST no longer serves them; klines flagged",
		zap.String("symbol", q.name), zap.Int64("from_id", g.from), zap.Int64("to_id", upTo), zap.Int64("missing", n), zap.Error(err))
	e.command(shard.Command(shard.OpMarkGap, q.sym, q.lastTime, max(until, q.lastTime)))
	q.last = upTo
	g.from = upTo + 1
}

// anchored applies a page of a listing's trades (since the listing, then from
// the last id on) until it reaches what the stream holds.
func (q *sequence) anchored(e env, r *fetched) {
	g := &q.gap
	c := e.stats()
	for i := range r.trades {
		t := &r.trades[i]
		if t.TradeTime < q.since || t.AggID <= q.last {
			continue
		}
		if len(g.held) > 0 && t.AggID >= g.held[0].AggID {
			break
		}
		if q.partialFirst {
			q.partialFirst = false
			q.sendPartial(e, t)
		}
		q.pass(e, t)
		c.filled.Add(1)
	}
	caughtUp := len(g.held) > 0 && q.last+1 >= g.held[0].AggID
	if len(r.trades) == r.limit && !caughtUp {
		q.ask(e)
		return
	}
	if len(g.held) > 0 && !caughtUp {
		// REST does not reach the stream's first trade yet: a gap like any.
		if q.last == 0 {
			// Nothing since since on REST: the stream's first trade starts it.
			q.last = g.held[0].AggID - 1
			if q.partialFirst {
				q.partialFirst = false
				q.sendPartial(e, &g.held[0])
			}
		}
		q.state, q.afterGap = stateGap, stateLive
		g.from, g.to, g.toTrade = q.last+1, g.held[0].AggID-1, -1
		q.gen++
		q.ask(e)
		return
	}
	// Caught up, or nothing on the stream yet: from here the stream goes on.
	c.listingsAnchored.Add(1)
	held := g.held
	q.gap = gap{}
	q.gen++
	if q.last == 0 && len(held) == 0 {
		// Nothing traded since since: the first trade starts it, and the next
		// ticker read gives a baseline. A listing is whole from its first trade.
		q.state = stateFresh
		q.freshLost = false
		if !q.partialFirst {
			q.since = math.MinInt64
		}
		q.partialFirst = false
		q.setHold(e, shard.NoHold)
		return
	}
	if q.last == 0 && q.partialFirst {
		q.partialFirst = false
		q.sendPartial(e, &held[0])
	}
	q.state = stateGap
	q.afterGap = stateLive
	q.gap = gap{from: q.last + 1, to: q.last, toTrade: -1, held: held}
	q.release(e)
}

// setHold sends the shard a hold at at (shard.NoHold lifts it) when it changes.
func (q *sequence) setHold(e env, at int64) {
	if at == q.hold {
		return
	}
	if q.hold == shard.NoHold {
		q.holdAt = e.now()
	}
	q.sendHold(e, at)
}

func (q *sequence) sendHold(e env, at int64) {
	switch {
	case q.hold == shard.NoHold && at != shard.NoHold:
		e.stats().holding.Add(1)
	case q.hold != shard.NoHold && at == shard.NoHold:
		e.stats().holding.Add(-1)
	}
	q.hold = at
	if at == shard.NoHold {
		q.holdAt = time.Time{}
	} else {
		q.holdExpired = false
	}
	e.command(shard.Hold(q.sym, at))
}

// atExit accounts for what the sequence still holds when the daemon stops: held
// trades are counted and logged, and klines that closed without missing trades
// (their hold expired) are flagged.
func (q *sequence) atExit(e env) {
	if q.holdExpired && (q.state == stateGap || q.state == stateAnchor || q.state == stateUnverified) {
		until := e.exchangeNow()
		if len(q.gap.held) > 0 {
			until = q.gap.held[0].TradeTime
		}
		from := q.lastTime
		if q.state == stateAnchor && q.last == 0 {
			from = q.since
		}
		e.command(shard.Command(shard.OpMarkGap, q.sym, from, max(until, from)))
	}
	if n := len(q.gap.held); n > 0 {
		c := e.stats()
		c.held.Add(-int64(n))
		c.heldAtExit.Add(uint64(n))
		e.logger().Warn("trades still held behind a gap at exit (a restart with a store fetches them again)",
			zap.String("symbol", q.name), zap.Int("held", n), zap.Int64("missing_from", q.gap.from))
	}
}
