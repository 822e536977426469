// Package shard aggregates trades into klines exactly as Binance computes them.
//
// One Aggregator runs per shard goroutine and owns the kline state of that
// shard's symbols for every configured Interval. It is single-goroutine by
// design: no locks, no atomics; every method, and the Emitter it calls, runs on
// the owning goroutine.
//
// # Binance semantics
//
// For each (symbol, interval, period): Open is the price of the trade with
// the smallest aggTrade id and Close of the largest (whatever order trades
// arrive in), High/Low the extremes; Count is sum(LastID-FirstID+1); Volume sums quantities and
// QuoteVolume sums price*qty exactly; the taker-buy sums take trades with
// BuyerMaker == false. After a symbol's first trade every period yields a
// kline: a period without trades gives O=H=L=C=previous close, volumes 0, count
// 0, trade ids -1 and FlagEmpty. No kline precedes the symbol's first trade.
//
// Grids: up to 1d, periods are aligned on the Unix epoch; weeks open on Monday
// 00:00 UTC; 3d uses Binance's grid (open_time = 1 day mod 3 days); 1M opens on
// the first day of each calendar month, 00:00 UTC.
//
// # Roll-up
//
// A trade updates one interval only, the base: the finest grid every
// configured interval is made of (1m for Binance's futures set, 1s for
// spot's; the gcd of the lengths, computed and never emitted when no
// configured interval is it, as for 3m with 5m). Every longer interval folds
// the klines of its child, the longest interval that tiles it (1M and 1w fold
// 1d, 1d folds 12h, 15m folds 5m, 5m folds the 1m base), as each closes:
// sums add exactly, extremes combine, Open and Close follow the ids. A parent
// period closes the moment its last child does, so all intervals close
// together and a trade costs the same with 1 interval or 16. A late trade
// corrects every kline holding it, open accumulators included. The running
// kline of a parent's open period is its accumulator plus its open children,
// folded on demand (FlushUpdates with parents), at the pace a consumer reads
// it, not at every trade.
//
// # Duplicates
//
// A duplicate is an aggTrade id already applied to the symbol, remembered as a
// few ranges of ids (most symbols: one). An id far ahead of the others (a
// corrupt frame) adds a range of its own: the real ids that follow are still
// applied, so one bad trade spoils at most its own kline. Past 16 ranges the
// two closest are joined (Counters.RunMerges).
//
// # Commands
//
// Control travels in-band, as parse.Trade records with Control set (see Op),
// through the same ring as the trades it must follow: OpHold keeps a symbol's
// klines open while its missing trades are fetched, OpMarkGap flags klines
// whose trades are lost (closed ones too: emitted again, or as a Mark when no
// longer kept), OpRetire ends a delisted symbol (a tombstone keeps its ids, so
// a stray trade later is a duplicate or a late trade, never a new kline over one
// already written), OpPartial flags the first klines of a symbol followed after
// they opened.
//
// # Closing
//
// Klines close by watermark (event time, never the wall clock): Advance(wm)
// closes what has CloseTime + Grace < wm; with Config.PromptClose a symbol's
// trade in a later period closes the earlier ones at once (a live feed in
// aggTrade id order). Until then a trade into the period is
// applied even if it arrives out of time order. A trade into a period that has
// already closed corrects that kline if it is among the last History closed
// ones (re-emitted with FlagCorrected, together with the empty klines after it
// whose copied close changed); older, it is counted in Counters.TooLate,
// reported to Emitter.Dropped and dropped, and its kline is marked FlagLate. Each symbol keeps a window of ceil(Grace/length)+2 open periods per
// interval; a trade that runs beyond it (the watermark lagging far behind the
// trades) closes the oldest periods early (Counters.EarlyCloses), and any
// later trade into them becomes a correction. Memory per (symbol, interval) is
// that window plus History klines (a child keeps at least as many as its
// parent folds, so corrections reach them), however long a symbol stays quiet: empty
// klines are produced when closing, not stored. Config.MaxEmpty stops them
// after a silence that long (the last one gets FlagQuiet).
//
// # Arithmetic and bounds
//
// Prices and quantities are parse.Decimal (8 fractional digits, up to
// 184467440737.09551615 each). Volumes are Uint128 sums at scale 8 (up to
// 2^128-1 units, ~3.4e30 base units per kline), quote volumes are Uint128 sums
// of the exact 128-bit products at scale 16 (~3.4e22 quote units per kline).
// A sum that overflows is saturated at MaxUint128, the kline gets FlagOverflow
// and Counters.Overflows is bumped: never a silently wrong kline.
//
// # Allocation
//
// Apply allocates only on a symbol's first trade (its state, one slab);
// Advance, Flush and FlushUpdates do not allocate. Symbol ids index a dense
// slice, so they should be small and dense (as parse assigns them).
//
// Expensive consistency checks are compiled in with the `invariants` build tag
// and panic with "BUG: ...".
package shard
