package feed

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// fakeEnv records what a sequence does, on a clock the test moves.
type fakeEnv struct {
	t        *testing.T
	clock    time.Time
	exchange int64
	handed   []int64 // aggTrade ids handed over, in order
	commands []string
	requests []fetch
	tickers  int // ticker reads asked for
	// delivering: since when the connection surely delivers (deliveringSince)
	delivering int64
	c          counters
	cfg        Config
}

func newFakeEnv(t *testing.T) *fakeEnv {
	cfg := DefaultConfig(exchange.Futures)
	return &fakeEnv{t: t, clock: time.Unix(1_700_000_000, 0), exchange: 1_700_000_000_000, cfg: cfg, delivering: math.MinInt64}
}

func (e *fakeEnv) handOver(t *parse.Trade) {
	if n := len(e.handed); n > 0 && t.AggID <= e.handed[n-1] {
		e.t.Fatalf("handed over %d after %d", t.AggID, e.handed[n-1])
	}
	e.handed = append(e.handed, t.AggID)
}

func (e *fakeEnv) command(c parse.Trade) {
	var s string
	switch shard.Op(c.Control) {
	case shard.OpHold:
		if c.TradeTime == shard.NoHold {
			s = "release"
		} else {
			s = fmt.Sprintf("hold@%d", c.TradeTime)
		}
	case shard.OpMarkGap:
		s = fmt.Sprintf("markgap@%d-%d", c.TradeTime, c.EventTime)
	case shard.OpPartial:
		s = fmt.Sprintf("partial@%d", c.TradeTime)
	case shard.OpRetire:
		s = "retire"
	default:
		e.t.Fatalf("unknown command %d", c.Control)
	}
	e.commands = append(e.commands, s)
}

func (e *fakeEnv) request(f fetch)                    { e.requests = append(e.requests, f) }
func (e *fakeEnv) wantTicker()                        { e.tickers++ }
func (e *fakeEnv) now() time.Time                     { return e.clock }
func (e *fakeEnv) exchangeNow() int64                 { return e.exchange }
func (e *fakeEnv) deliveringSince(*parse.Trade) int64 { return e.delivering }
func (e *fakeEnv) stats() *counters                   { return &e.c }
func (e *fakeEnv) logger() *zap.Logger                { return zap.NewNop() }
func (e *fakeEnv) config() *Config                    { return &e.cfg }

func (e *fakeEnv) advance(d time.Duration) {
	e.clock = e.clock.Add(d)
	e.exchange += d.Milliseconds()
}

// take returns and forgets the requests and commands so far.
func (e *fakeEnv) take() ([]fetch, string) {
	r, c := e.requests, strings.Join(e.commands, ",")
	e.requests, e.commands = nil, nil
	return r, c
}

// tr is aggTrade id a at time ms, raw trade ids 10a..10a+1.
func tr(a, ms int64) parse.Trade {
	return parse.Trade{AggID: a, FirstID: 10 * a, LastID: 10*a + 1, TradeTime: ms, EventTime: ms, Price: 1, Qty: 1, Symbol: 3}
}

// answer builds REST's answer to f with ids [from, to] (empty when from > to).
func answer(f fetch, from, to int64) *fetched {
	r := &fetched{fetch: f}
	for a := from; a <= to; a++ {
		r.trades = append(r.trades, tr(a, 1000*a))
	}
	return r
}

// live returns a sequence in Live with last = 100.
func live(t *testing.T, e *fakeEnv) *sequence {
	q := newSequence(3, "BTCUSDT")
	q.follow(e, 5000, false)
	t100 := tr(100, 100_000)
	q.onTrade(e, &t100)
	if q.state != stateLive || q.last != 100 {
		t.Fatalf("setup: state %v last %d", q.state, q.last)
	}
	e.take()
	e.handed = nil
	return q
}

func checkAccounted(t *testing.T, e *fakeEnv, received uint64) {
	t.Helper()
	s := e.c.snapshot()
	s.Received = received
	if !s.Accounted() {
		t.Fatalf("trades not accounted for: %+v", s)
	}
}

func TestSequenceFreshStartsPartial(t *testing.T) {
	e := newFakeEnv(t)
	q := newSequence(3, "BTCUSDT")
	q.follow(e, 5000, false)
	if q.state != stateFresh {
		t.Fatalf("state %v", q.state)
	}
	t1 := tr(7, 6000)
	q.onTrade(e, &t1)
	if _, cmds := e.take(); q.state != stateLive || cmds != "partial@5000" || !slices.Equal(e.handed, []int64{7}) {
		t.Fatalf("state %v, commands %q, handed %v", q.state, cmds, e.handed)
	}
}

// A subscription the exchange put into effect after our clock said (its
// answer came first, or the clock lags by a request's latency): the klines
// before the connection's first trade are partial, not only those before the
// subscription was made.
func TestSequenceFreshPartialUntilDelivering(t *testing.T) {
	e := newFakeEnv(t)
	q := newSequence(3, "BTCUSDT")
	q.follow(e, 5000, false)
	e.delivering = 5400 // the connection's first trade, of another symbol
	t1 := tr(7, 6000)
	q.onTrade(e, &t1)
	if _, cmds := e.take(); q.state != stateLive || cmds != "partial@5400" || q.since != 5400 {
		t.Fatalf("state %v, commands %q, since %d", q.state, cmds, q.since)
	}
}

// fresh returns a sequence followed since 5000 on a connection that took
// effect then, with a baseline (last raw trade id 500) when base.
func fresh(t *testing.T, e *fakeEnv, base bool) *sequence {
	q := newSequence(3, "BTCUSDT")
	q.follow(e, 5000, false)
	q.onConnected(e, 5000)
	if base {
		e.advance(e.cfg.TickerLag)
		q.onTicker(e, 500, e.clock)
		if q.baseTID != 500 {
			t.Fatalf("no baseline: %d", q.baseTID)
		}
	}
	e.take()
	return q
}

func TestSequenceFreshFirstTradeContinuesBaseline(t *testing.T) {
	e := newFakeEnv(t)
	q := fresh(t, e, true)
	first := parse.Trade{AggID: 7, FirstID: 501, LastID: 502, TradeTime: 9000}
	q.onTrade(e, &first)
	if _, cmds := e.take(); q.state != stateLive || cmds != "partial@5000" {
		t.Fatalf("state %v commands %q", q.state, cmds)
	}
}

func TestSequenceFreshFirstTradeAfterAHoleAnchors(t *testing.T) {
	e := newFakeEnv(t)
	q := fresh(t, e, true)
	// The stream delivers since 8500 only: REST, asked since 5000, has it all.
	e.delivering = 8500
	// Raw trades 501..510 never reached the stream.
	first := parse.Trade{AggID: 9, FirstID: 511, LastID: 511, TradeTime: 9000}
	q.onTrade(e, &first)
	reqs, cmds := e.take()
	if q.state != stateAnchor || len(reqs) != 1 || reqs[0].kind != fetchSince || reqs[0].from != 5000 || cmds != "hold@5000" {
		t.Fatalf("state %v requests %+v commands %q", q.state, reqs, cmds)
	}
	r := &fetched{fetch: reqs[0]}
	for a := int64(7); a <= 9; a++ {
		r.trades = append(r.trades, parse.Trade{AggID: a, FirstID: 490 + 10*(a-7) + 1, LastID: 500 + 10*(a-7) + 1, TradeTime: 8000 + a})
	}
	q.onFetched(e, r)
	if _, cmds := e.take(); q.state != stateLive || !slices.Equal(e.handed, []int64{7, 8, 9}) || cmds != "partial@5000,release" {
		t.Fatalf("state %v handed %v commands %q", q.state, e.handed, cmds)
	}
}

func TestSequenceFreshLossVerifiedByTicker(t *testing.T) {
	e := newFakeEnv(t)
	q := fresh(t, e, true)
	q.onDisconnect(e, e.clock) // the baseline was read before the last frame heard
	e.advance(time.Second)
	q.onConnected(e, e.exchange)
	e.advance(e.cfg.TickerLag)
	q.onTicker(e, 500, e.clock)
	if _, cmds := e.take(); q.state != stateFresh || q.freshLost || cmds != "hold@5000,release" {
		t.Fatalf("state %v lost %v commands %q", q.state, q.freshLost, cmds)
	}
}

func TestSequenceFreshLossWithTradesAnchors(t *testing.T) {
	e := newFakeEnv(t)
	q := fresh(t, e, true)
	// The baseline was read after the connection fell silent: not trusted.
	q.onDisconnect(e, e.clock.Add(-time.Second))
	q.onConnected(e, e.exchange)
	e.advance(e.cfg.TickerLag)
	q.onTicker(e, 500, e.clock)
	reqs, _ := e.take()
	if q.state != stateAnchor || len(reqs) != 1 || reqs[0].kind != fetchSince {
		t.Fatalf("state %v requests %+v", q.state, reqs)
	}
	q.onFetched(e, answer(reqs[0], 1, 0)) // nothing traded after all
	if _, cmds := e.take(); q.state != stateFresh || q.since != 5000 || cmds != "release" {
		t.Fatalf("state %v since %d commands %q", q.state, q.since, cmds)
	}
}

func TestSequenceLiveInOrderAndDuplicates(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	for _, a := range []int64{101, 101, 99, 102} {
		tt := tr(a, 1000*a)
		q.onTrade(e, &tt)
	}
	if !slices.Equal(e.handed, []int64{101, 102}) || e.c.duplicates.Load() != 2 || q.state != stateLive {
		t.Fatalf("handed %v, duplicates %d, state %v", e.handed, e.c.duplicates.Load(), q.state)
	}
	checkAccounted(t, e, 1+4)
}

func TestSequenceGapFilledByREST(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	t105 := tr(105, 105_000)
	q.onTrade(e, &t105)
	reqs, cmds := e.take()
	if q.state != stateGap || q.gap.from != 101 || q.gap.to != 104 || cmds != "hold@100000" || len(reqs) != 1 || reqs[0].kind != fetchFill || reqs[0].from != 101 || reqs[0].prio != prioFill {
		t.Fatalf("state %v gap %+v commands %q requests %+v", q.state, q.gap, cmds, reqs)
	}
	// Later stream trades wait behind the gap; a repeat is a duplicate.
	for _, a := range []int64{107, 106, 107} {
		tt := tr(a, 1000*a)
		q.onTrade(e, &tt)
	}
	q.onFetched(e, answer(reqs[0], 101, 107)) // REST runs past the gap: the rest is ignored
	_, cmds = e.take()
	if q.state != stateLive || !slices.Equal(e.handed, []int64{101, 102, 103, 104, 105, 106, 107}) || cmds != "release" {
		t.Fatalf("state %v handed %v commands %q", q.state, e.handed, cmds)
	}
	if e.c.filled.Load() != 4 || e.c.held.Load() != 0 || e.c.duplicates.Load() != 1 {
		t.Fatalf("counters %+v", e.c.snapshot())
	}
	checkAccounted(t, e, 1+4)
}

func TestSequenceStreamFillsGapItself(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	t103 := tr(103, 103_000)
	q.onTrade(e, &t103)
	reqs, _ := e.take()
	// The stream delivers the "missing" ids late (reordered frames).
	for _, a := range []int64{101, 102} {
		tt := tr(a, 1000*a)
		q.onTrade(e, &tt)
	}
	if _, cmds := e.take(); q.state != stateLive || !slices.Equal(e.handed, []int64{101, 102, 103}) || cmds != "release" {
		t.Fatalf("state %v handed %v commands %q", q.state, e.handed, cmds)
	}
	// The answer to the request of the gap that closed is ignored.
	q.onFetched(e, answer(reqs[0], 101, 102))
	if len(e.handed) != 3 {
		t.Fatalf("a stale answer was applied: %v", e.handed)
	}
}

func TestSequenceHeldHoleOpensNextGap(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	for _, a := range []int64{102, 105} {
		tt := tr(a, 1000*a)
		q.onTrade(e, &tt)
	}
	reqs, _ := e.take()
	q.onFetched(e, answer(reqs[0], 101, 101))
	reqs, cmds := e.take()
	if q.state != stateGap || q.gap.from != 103 || q.gap.to != 104 || len(reqs) != 1 || reqs[0].from != 103 || strings.Contains(cmds, "release") {
		t.Fatalf("state %v gap %+v requests %+v commands %q", q.state, q.gap, reqs, cmds)
	}
	q.onFetched(e, answer(reqs[0], 103, 104))
	if _, cmds := e.take(); q.state != stateLive || !slices.Equal(e.handed, []int64{101, 102, 103, 104, 105}) || cmds != "release" {
		t.Fatalf("state %v handed %v commands %q", q.state, e.handed, cmds)
	}
}

func TestSequencePagesAFullAnswer(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	t2000 := tr(2500, 2_500_000)
	q.onTrade(e, &t2000)
	reqs, _ := e.take()
	q.onFetched(e, answer(reqs[0], 101, 1100))
	reqs, _ = e.take()
	if len(reqs) != 1 || reqs[0].from != 1101 {
		t.Fatalf("next page not asked: %+v", reqs)
	}
	q.onFetched(e, answer(reqs[0], 1101, 2100))
	reqs, _ = e.take()
	q.onFetched(e, answer(reqs[0], 2101, 2499))
	if q.state != stateLive || len(e.handed) != 2400 {
		t.Fatalf("state %v, %d handed", q.state, len(e.handed))
	}
}

func TestSequenceRESTErrorsRetryWithoutLoss(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	t105 := tr(105, 105_000)
	q.onTrade(e, &t105)
	for range 20 { // an outage: errors are retried, never a loss
		reqs, _ := e.take()
		if len(reqs) != 1 {
			t.Fatalf("%d requests pending", len(reqs))
		}
		q.onFetched(e, &fetched{fetch: reqs[0], err: fmt.Errorf("connection refused")})
		e.advance(11 * time.Second)
		q.onTick(e)
	}
	if q.state != stateGap || e.c.gapsUnfillable.Load() != 0 {
		t.Fatalf("state %v, unfillable %d", q.state, e.c.gapsUnfillable.Load())
	}
}

func TestSequenceUnfillableGapIsFlagged(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	t105 := tr(105, 105_000)
	q.onTrade(e, &t105)
	// REST returns nothing from 101 although it has newer trades: gone.
	for q.state == stateGap {
		reqs, _ := e.take()
		if len(reqs) == 0 {
			e.advance(time.Second)
			q.onTick(e)
			continue
		}
		switch r := reqs[0]; r.kind {
		case fetchFill:
			q.onFetched(e, &fetched{fetch: r})
		case fetchNewest:
			q.onFetched(e, answer(r, 300, 300))
		}
	}
	_, cmds := e.take()
	if !strings.Contains(cmds, "markgap@100000-") || !strings.HasSuffix(cmds, "release") {
		t.Fatalf("commands %q", cmds)
	}
	if e.c.gapsUnfillable.Load() != 1 || e.c.tradesLost.Load() != 4 || !slices.Equal(e.handed, []int64{105}) {
		t.Fatalf("counters %+v, handed %v", e.c.snapshot(), e.handed)
	}
}

// A trade whose id is far ahead (a corrupt frame) must not stop the real ones.
func TestSequenceBogusIDIsDropped(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	bogus := tr(3_000_000_000, 101_000)
	q.onTrade(e, &bogus)
	// The real trades keep coming on the stream and pass straight through.
	for a := int64(101); a <= 110; a++ {
		tt := tr(a, 1000*a)
		q.onTrade(e, &tt)
	}
	for i := 0; q.state == stateGap && i < 100; i++ {
		reqs, _ := e.take()
		for _, r := range reqs {
			if r.kind == fetchNewest {
				q.onFetched(e, answer(r, 110, 110))
			} else {
				q.onFetched(e, answer(r, r.from, 110))
			}
		}
		e.advance(500 * time.Millisecond)
		q.onTick(e)
	}
	if q.state != stateLive || e.c.bogus.Load() != 1 || q.last != 110 || len(e.handed) != 10 {
		t.Fatalf("state %v, bogus %d, last %d, handed %v", q.state, e.c.bogus.Load(), q.last, e.handed)
	}
	if e.clock.Sub(q.gap.opened) < e.cfg.BogusAfter && q.gap.opened != (time.Time{}) {
		t.Fatalf("dropped before BogusAfter")
	}
	// And the next real trade is in sequence.
	t111 := tr(111, 111_000)
	q.onTrade(e, &t111)
	if q.last != 111 {
		t.Fatal("the trade after the bogus one was not applied")
	}
	checkAccounted(t, e, 1+1+10+1)
}

func TestSequenceDisconnectVerifiedByStream(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	q.onDisconnect(e, e.clock)
	if _, cmds := e.take(); q.state != stateUnverified || cmds != "hold@100000" {
		t.Fatalf("state %v commands %q", q.state, cmds)
	}
	q.onConnected(e, e.exchange)
	t101 := tr(101, 101_000)
	q.onTrade(e, &t101)
	if _, cmds := e.take(); q.state != stateLive || cmds != "release" || e.c.verifiedByStream.Load() != 1 {
		t.Fatalf("state %v commands %q", q.state, cmds)
	}
}

func TestSequenceDisconnectVerifiedByTicker(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	q.onDisconnect(e, e.clock)
	// A read sent while the connection is still down proves nothing.
	q.onTicker(e, q.lastTID, e.clock)
	q.onConnected(e, e.exchange)
	// Nor one sent right after the new connection.
	q.onTicker(e, q.lastTID, e.clock)
	if q.state != stateUnverified {
		t.Fatalf("verified too early: %v", q.state)
	}
	e.advance(e.cfg.TickerLag)
	q.onTicker(e, q.lastTID, e.clock)
	if _, cmds := e.take(); q.state != stateLive || !strings.HasSuffix(cmds, "release") || e.c.verifiedByTicker.Load() != 1 {
		t.Fatalf("state %v commands %q", q.state, cmds)
	}
}

func TestSequenceDisconnectTickerShowsMissedTrades(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	q.onDisconnect(e, e.clock)
	q.onConnected(e, e.exchange)
	e.advance(e.cfg.TickerLag)
	q.onTicker(e, 10*103+1, e.clock) // trades 101..103 happened while down
	reqs, _ := e.take()
	if q.state != stateGap || len(reqs) != 1 || reqs[0].from != 101 || q.gap.toTrade != 1031 {
		t.Fatalf("state %v gap %+v requests %+v", q.state, q.gap, reqs)
	}
	q.onFetched(e, answer(reqs[0], 101, 103))
	if _, cmds := e.take(); q.state != stateLive || !slices.Equal(e.handed, []int64{101, 102, 103}) || cmds != "release" {
		t.Fatalf("state %v handed %v commands %q", q.state, e.handed, cmds)
	}
}

func TestSequenceGapDuringDisconnectResolvesUnverified(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	t103 := tr(103, 103_000)
	q.onTrade(e, &t103)
	reqs, _ := e.take()
	q.onDisconnect(e, e.clock)
	q.onFetched(e, answer(reqs[0], 101, 102))
	if _, cmds := e.take(); q.state != stateUnverified || strings.Contains(cmds, "release") {
		t.Fatalf("state %v commands %q: trades after the held one may be missing", q.state, cmds)
	}
}

func TestSequenceTrailingGapFromTicker(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	q.onTicker(e, 10*102+1, e.clock) // the exchange has 101, 102; the stream did not say
	e.advance(e.cfg.SuspectDelay / 2)
	q.onTick(e)
	if q.state != stateLive {
		t.Fatalf("gap opened before SuspectDelay: %v", q.state)
	}
	e.advance(e.cfg.SuspectDelay)
	q.onTick(e)
	reqs, _ := e.take()
	if q.state != stateGap || len(reqs) != 1 || e.c.trailingGaps.Load() != 1 {
		t.Fatalf("state %v requests %+v", q.state, reqs)
	}
	q.onFetched(e, answer(reqs[0], 101, 102))
	if q.state != stateLive || !slices.Equal(e.handed, []int64{101, 102}) {
		t.Fatalf("state %v handed %v", q.state, e.handed)
	}
}

func TestSequenceSuspectClearedByStream(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	q.onTicker(e, 10*101+1, e.clock)
	t101 := tr(101, 101_000)
	q.onTrade(e, &t101)
	e.advance(2 * e.cfg.SuspectDelay)
	q.onTick(e)
	if q.state != stateLive || e.c.trailingGaps.Load() != 0 {
		t.Fatalf("state %v", q.state)
	}
}

func TestSequenceListing(t *testing.T) {
	e := newFakeEnv(t)
	q := newSequence(3, "NEWUSDT")
	q.follow(e, 2_000, true)
	reqs, cmds := e.take()
	if q.state != stateAnchor || cmds != "hold@2000" || len(reqs) != 1 || reqs[0].kind != fetchSince || reqs[0].from != 2_000 || reqs[0].prio != prioListing {
		t.Fatalf("state %v commands %q requests %+v", q.state, cmds, reqs)
	}
	// The stream starts at 2001 while REST pages through 1..2000 (one before since).
	for _, a := range []int64{2001, 2002} {
		tt := tr(a, 1000*a)
		q.onTrade(e, &tt)
	}
	r := answer(reqs[0], 1, 1000)
	// REST's first trade is before the listing read (trade 1 at 1,000): not wanted.
	q.onFetched(e, r)
	reqs, _ = e.take()
	if len(reqs) != 1 || reqs[0].kind != fetchFill || reqs[0].from != 1001 {
		t.Fatalf("next page %+v", reqs)
	}
	q.onFetched(e, answer(reqs[0], 1001, 2000))
	_, cmds = e.take()
	if q.state != stateLive || len(e.handed) != 2001 || e.handed[0] != 2 || e.handed[2000] != 2002 || cmds != "release" {
		t.Fatalf("state %v, %d handed (%v...), commands %q", q.state, len(e.handed), e.handed[:3], cmds)
	}
	if e.c.listingsAnchored.Load() != 1 {
		t.Fatal("listing not counted")
	}
}

func TestSequenceListingWithoutTrades(t *testing.T) {
	e := newFakeEnv(t)
	q := newSequence(3, "NEWUSDT")
	q.follow(e, 50_000, true)
	reqs, _ := e.take()
	q.onFetched(e, answer(reqs[0], 1, 0))
	if _, cmds := e.take(); q.state != stateFresh || cmds != "release" {
		t.Fatalf("state %v commands %q", q.state, cmds)
	}
	t1 := tr(1, 60_000)
	q.onTrade(e, &t1)
	if _, cmds := e.take(); q.state != stateLive || cmds != "partial@60001" {
		// Whole from its first trade: the partial mark covers nothing before it.
		t.Fatalf("state %v commands %q", q.state, cmds)
	}
}

func TestSequenceUnfollowFillsPendingGapFirst(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	t103 := tr(103, 103_000)
	q.onTrade(e, &t103)
	reqs, _ := e.take()
	q.unfollow(e)
	if q.state != stateGap {
		t.Fatalf("unfollow dropped a pending gap: %v", q.state)
	}
	q.onFetched(e, answer(reqs[0], 101, 102))
	if _, cmds := e.take(); q.state != stateLive || cmds != "hold@103000" || !slices.Equal(e.handed, []int64{101, 102, 103}) || e.tickers == 0 {
		t.Fatalf("state %v commands %q handed %v", q.state, cmds, e.handed)
	}
	// The last word: a ticker read taken after it was let go.
	e.advance(time.Second)
	q.onTicker(e, q.lastTID, e.clock)
	if _, cmds := e.take(); q.state != stateIdle || cmds != "retire,release" {
		t.Fatalf("state %v commands %q", q.state, cmds)
	}
	t104 := tr(104, 104_000)
	q.onTrade(e, &t104)
	if e.c.unwanted.Load() != 1 {
		t.Fatal("trade after the retirement not counted as unwanted")
	}
}

// A symbol let go whose last trade was lost in flight: the ticker's last word
// shows it, it is fetched, and then the symbol is retired.
func TestSequenceUnfollowFetchesTrailingTrades(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	q.unfollow(e)
	if q.state != stateLive || e.tickers == 0 {
		t.Fatalf("state %v, %d ticker reads asked", q.state, e.tickers)
	}
	e.advance(time.Second)
	q.onTicker(e, 10*101+1, e.clock)
	reqs, _ := e.take()
	if q.state != stateGap || len(reqs) != 1 {
		t.Fatalf("state %v requests %+v", q.state, reqs)
	}
	q.onFetched(e, answer(reqs[0], 101, 101))
	e.advance(time.Second)
	q.onTicker(e, 10*101+1, e.clock)
	if _, cmds := e.take(); q.state != stateIdle || cmds != "hold@101000,retire,release" || !slices.Equal(e.handed, []int64{101}) {
		t.Fatalf("state %v commands %q handed %v", q.state, cmds, e.handed)
	}
}

func TestSequenceHoldExpires(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	t105 := tr(105, 105_000)
	q.onTrade(e, &t105)
	e.take()
	e.advance(e.cfg.MaxHold)
	q.onTick(e)
	if _, cmds := e.take(); !strings.Contains(cmds, "release") || e.c.holdsExpired.Load() != 1 || q.state != stateGap {
		t.Fatalf("commands %q state %v", cmds, q.state)
	}
	// Stopped before REST brought the trades: the klines that closed without
	// them are flagged.
	q.atExit(e)
	if _, cmds := e.take(); cmds != "markgap@100000-105000" || e.c.heldAtExit.Load() != 1 {
		t.Fatalf("at exit: commands %q, held at exit %d", cmds, e.c.heldAtExit.Load())
	}
}

func TestSequenceHeldAtExit(t *testing.T) {
	e := newFakeEnv(t)
	q := live(t, e)
	for _, a := range []int64{105, 106} {
		tt := tr(a, 1000*a)
		q.onTrade(e, &tt)
	}
	q.atExit(e)
	if e.c.heldAtExit.Load() != 2 || e.c.held.Load() != 0 {
		t.Fatalf("counters %+v", e.c.snapshot())
	}
	checkAccounted(t, e, 1+2)
}

// Every row of the transition table in doc.go names a state; each state is
// reached by some test above (a guard against a state nobody tests).
func TestSequenceStatesNamed(t *testing.T) {
	for s := seqState(0); s < numStates; s++ {
		if s.String() == "" {
			t.Fatalf("state %d has no name", s)
		}
	}
	if math.MaxInt64 != shard.NoHold {
		t.Fatal("NoHold changed")
	}
}

// A symbol a store saved resumes unverified from its last trade: the stream or
// the ticker says what traded while klagg was down, and REST fills it.
func TestSequenceResume(t *testing.T) {
	e := newFakeEnv(t)
	q := newSequence(3, "BTCUSDT")
	q.resumeFrom(e, Resume{Last: 100, LastTradeID: 1001, LastTime: 100_000})
	q.follow(e, 5000, false)
	q.onConnected(e, e.exchange)
	if _, cmds := e.take(); q.state != stateUnverified || cmds != "hold@100000" {
		t.Fatalf("state %v commands %q", q.state, cmds)
	}
	t105 := tr(105, 105_000)
	q.onTrade(e, &t105)
	reqs, _ := e.take()
	if q.state != stateGap || len(reqs) != 1 || reqs[0].from != 101 {
		t.Fatalf("state %v requests %+v", q.state, reqs)
	}
	q.onFetched(e, answer(reqs[0], 101, 104))
	if _, cmds := e.take(); q.state != stateLive || !slices.Equal(e.handed, []int64{101, 102, 103, 104, 105}) || cmds != "release" {
		t.Fatalf("state %v handed %v commands %q", q.state, e.handed, cmds)
	}
	// No partial mark: the shard has the symbol's state from the store.
	if e.c.resumed.Load() != 1 {
		t.Fatal("resume not counted")
	}
}

// leftUnconfirmed returns a live sequence (last = 100) let go, for which no
// ticker read came within 2 Verify + SuspectDelay: its last word is asked of
// REST (the request is in e).
func leftUnconfirmed(t *testing.T, e *fakeEnv) *sequence {
	t.Helper()
	q := live(t, e)
	q.unfollow(e)
	e.take()
	e.advance(2*e.cfg.Verify + e.cfg.SuspectDelay)
	q.onTick(e)
	return q
}

// A symbol let go while no ticker read comes (a binding budget): REST itself
// gives its last word, page by page, before it is retired; nothing trailing
// is lost.
func TestSequenceUnfollowWithoutTickerAsksREST(t *testing.T) {
	e := newFakeEnv(t)
	q := leftUnconfirmed(t, e)
	reqs, _ := e.take()
	if q.state != stateGap || len(reqs) != 1 || reqs[0].from != 101 {
		t.Fatalf("state %v requests %+v", q.state, reqs)
	}
	// A full page, then a short one: two trailing trades came after the
	// stream was let go.
	full := answer(reqs[0], 101, 100+int64(reqs[0].limit))
	q.onFetched(e, full)
	reqs, _ = e.take()
	if q.state != stateGap || len(reqs) != 1 || reqs[0].from != 101+int64(full.limit) {
		t.Fatalf("after a full page: state %v requests %+v", q.state, reqs)
	}
	last := 100 + int64(full.limit) + 2
	q.onFetched(e, answer(reqs[0], 101+int64(full.limit), last))
	if _, cmds := e.take(); q.state != stateIdle || !strings.HasSuffix(cmds, "retire,release") || e.handed[len(e.handed)-1] != last || len(e.handed) != int(last-100) {
		t.Fatalf("state %v commands %q, %d handed, last %d", q.state, cmds, len(e.handed), e.handed[len(e.handed)-1])
	}
	if e.c.lastWordREST.Load() != 1 || e.c.tradesLost.Load() != 0 {
		t.Fatalf("counters: last word by REST %d, lost %d", e.c.lastWordREST.Load(), e.c.tradesLost.Load())
	}
}

// A symbol let go that traded no more: one empty page and it is retired.
func TestSequenceUnfollowWithoutTickerNothingMore(t *testing.T) {
	e := newFakeEnv(t)
	q := leftUnconfirmed(t, e)
	reqs, _ := e.take()
	q.onFetched(e, answer(reqs[0], 101, 100))
	if _, cmds := e.take(); q.state != stateIdle || cmds != "retire,release" || len(e.handed) != 0 {
		t.Fatalf("state %v commands %q handed %v", q.state, cmds, e.handed)
	}
}

// A symbol let go that REST no longer knows: after FillTries failed reads
// over a minute it is retired as it stands, counted and logged, not asked
// about for ever.
func TestSequenceUnfollowRESTUnknownGivesUp(t *testing.T) {
	e := newFakeEnv(t)
	q := leftUnconfirmed(t, e)
	for try := 1; ; try++ {
		reqs, _ := e.take()
		if len(reqs) != 1 {
			t.Fatalf("try %d: state %v requests %+v", try, q.state, reqs)
		}
		q.onFetched(e, &fetched{fetch: reqs[0], err: errors.New("-1121 Invalid symbol")})
		if q.state == stateIdle {
			// Tries 10 s apart: the minute decides, not FillTries (5).
			if want := int(lastWordPatience/(10*time.Second)) + 1; try != want {
				t.Fatalf("retired after %d tries, want %d", try, want)
			}
			break
		}
		e.advance(10 * time.Second)
		q.onTick(e)
	}
	if e.c.lastWordUnknown.Load() != 1 || len(e.handed) != 0 {
		t.Fatalf("last word unknown %d, handed %v", e.c.lastWordUnknown.Load(), e.handed)
	}
}
