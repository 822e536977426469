package feed

import (
	"fmt"
	"io"
	"sync/atomic"
)

// counters are the session's running totals, shared by its goroutines.
type counters struct {
	// Connections.
	connects, connectFailures, reconnects, rotations, shutdowns atomic.Uint64
	staleReplaced, pingTimeouts, subscribeErrors                atomic.Uint64

	// Trades. Every stream trade of the market ends in one bucket: handed over
	// (also counting REST trades), duplicate, unwanted, bogus or held at exit;
	// held counts those still waiting behind a gap.
	received, handedOver, filled, duplicates, unwanted, bogus, heldAtExit atomic.Uint64
	held                                                                  atomic.Int64
	holding                                                               atomic.Int64 // symbols whose klines are held

	// Gaps.
	gapsOpened, gapsClosed, gapsUnfillable, tradesLost, trailingGaps atomic.Uint64
	tickerUnconfirmed, verifiedByStream, verifiedByTicker            atomic.Uint64
	holdsExpired, listingsAnchored, fetchErrors, freshAnchors        atomic.Uint64
	lastWordREST, lastWordUnknown, resumed                           atomic.Uint64

	// REST and universe.
	requests, tickerReads, tickerFailures          atomic.Uint64
	listed, delisted, universeRejected, slotsAdded atomic.Uint64
	timeSyncs, timeSyncFailures                    atomic.Uint64
	symbols                                        atomic.Int64
	fetchesByKind                                  [numFetchKinds]atomic.Uint64
	_                                              [0]func() // not comparable
}

// Stats are the session's counters; any goroutine may read them.
type Stats struct {
	Connects, ConnectFailures, Reconnects, Rotations, Shutdowns uint64
	StaleReplaced, PingTimeouts, SubscribeErrors                uint64

	// Received counts the aggTrades decoded from the streams; Filled the ones
	// REST supplied. Received + Filled = HandedOver + Duplicates + Unwanted +
	// Bogus + Held + HeldAtExit.
	Received, Filled, HandedOver, Duplicates, Unwanted, Bogus uint64
	Held, HeldAtExit                                          uint64
	// Holding is the number of symbols whose klines wait for missing trades.
	Holding int

	GapsOpened, GapsClosed, GapsUnfillable, TradesLost, TrailingGaps uint64
	TickerUnconfirmed, VerifiedByStream, VerifiedByTicker            uint64
	HoldsExpired, ListingsAnchored, FetchErrors, FreshAnchors        uint64
	LastWordREST                                                     uint64 // unfollowed symbols whose last trades REST confirmed, no ticker read coming in time
	LastWordUnknown                                                  uint64 // unfollowed symbols retired as they stood: neither a ticker read nor REST answered
	Resumed                                                          uint64 // symbols resumed from a store

	Requests, TickerReads, TickerFailures          uint64
	Listed, Delisted, UniverseRejected, SlotsAdded uint64
	TimeSyncs, TimeSyncFailures                    uint64
	Symbols, Slots, Connected                      int
	ClockOffsetMillis                              int64 // exchange clock - local wall clock
	RESTWeightUsed                                 int64 // X-MBX-USED-WEIGHT-1M last seen
}

func (c *counters) snapshot() Stats {
	return Stats{
		Connects: c.connects.Load(), ConnectFailures: c.connectFailures.Load(), Reconnects: c.reconnects.Load(),
		Rotations: c.rotations.Load(), Shutdowns: c.shutdowns.Load(), StaleReplaced: c.staleReplaced.Load(),
		PingTimeouts: c.pingTimeouts.Load(), SubscribeErrors: c.subscribeErrors.Load(),
		Received: c.received.Load(), Filled: c.filled.Load(), HandedOver: c.handedOver.Load(),
		Duplicates: c.duplicates.Load(), Unwanted: c.unwanted.Load(), Bogus: c.bogus.Load(),
		Held: uint64(max(c.held.Load(), 0)), HeldAtExit: c.heldAtExit.Load(), Holding: int(max(c.holding.Load(), 0)),
		GapsOpened: c.gapsOpened.Load(), GapsClosed: c.gapsClosed.Load(), GapsUnfillable: c.gapsUnfillable.Load(),
		TradesLost: c.tradesLost.Load(), TrailingGaps: c.trailingGaps.Load(), TickerUnconfirmed: c.tickerUnconfirmed.Load(),
		VerifiedByStream: c.verifiedByStream.Load(), VerifiedByTicker: c.verifiedByTicker.Load(),
		HoldsExpired: c.holdsExpired.Load(), ListingsAnchored: c.listingsAnchored.Load(), FetchErrors: c.fetchErrors.Load(),
		FreshAnchors: c.freshAnchors.Load(), LastWordREST: c.lastWordREST.Load(), LastWordUnknown: c.lastWordUnknown.Load(), Resumed: c.resumed.Load(),
		Requests: c.requests.Load(), TickerReads: c.tickerReads.Load(), TickerFailures: c.tickerFailures.Load(),
		Listed: c.listed.Load(), Delisted: c.delisted.Load(), UniverseRejected: c.universeRejected.Load(),
		SlotsAdded: c.slotsAdded.Load(), TimeSyncs: c.timeSyncs.Load(), TimeSyncFailures: c.timeSyncFailures.Load(),
		Symbols: int(c.symbols.Load()),
	}
}

// Accounted reports whether every trade received is in exactly one bucket.
func (s Stats) Accounted() bool {
	return s.Received+s.Filled == s.HandedOver+s.Duplicates+s.Unwanted+s.Bogus+s.Held+s.HeldAtExit
}

// WriteSummary prints the live part of the end-of-run summary.
func (s Stats) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "live        %d connects (%d failed), %d reconnects, %d rotations, %d stale replaced, %d ping timeouts, %d serverShutdowns\n",
		s.Connects, s.ConnectFailures, s.Reconnects, s.Rotations, s.StaleReplaced, s.PingTimeouts, s.Shutdowns)
	fmt.Fprintf(w, "received    %d from the streams + %d from REST = %d handed over + %d duplicates + %d unwanted + %d bogus + %d held at exit\n",
		s.Received, s.Filled, s.HandedOver, s.Duplicates, s.Unwanted, s.Bogus, s.HeldAtExit+s.Held)
	fmt.Fprintf(w, "gaps        %d opened, %d closed, %d unfillable (%d trades lost, klines flagged), %d trailing, %d verified by the stream, %d by the ticker, %d holds expired\n",
		s.GapsOpened, s.GapsClosed, s.GapsUnfillable, s.TradesLost, s.TrailingGaps, s.VerifiedByStream, s.VerifiedByTicker, s.HoldsExpired)
	fmt.Fprintf(w, "universe    %d symbols on %d connections; %d listed, %d delisted, %d reads rejected; %d REST requests, %d ticker reads\n",
		s.Symbols, s.Slots, s.Listed, s.Delisted, s.UniverseRejected, s.Requests, s.TickerReads)
}
