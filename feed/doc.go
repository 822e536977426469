// Package feed is klagg's Binance session: it follows every symbol of a market
// over WebSocket connections, proves each symbol's aggTrade sequence complete,
// fetches what is missing from REST within the weight budget, and hands the
// trades to the pipeline in id order per symbol.
//
// # Pieces
//
//	Session    the universe (exchangeInfo, refreshed; a read that would delist
//	           too much at once is ignored until it repeats), the exchange clock,
//	           the connection slots (added as listings fill them), the REST
//	           scheduler and the 24 h ticker reads that verify the streams.
//	slot       one WebSocket connection and its symbols: a pipeline.Source.
//	           Subscribes by URL and by SUBSCRIBE/UNSUBSCRIBE, reconnects with
//	           backoff, rotates before Binance's 24 h cut and on serverShutdown,
//	           pings the server (no pong: dead), and replaces a connection that
//	           stays silent while the ticker shows its symbols trading.
//	sequence   one symbol's aggTrade ids: the state machine below. Pure: it acts
//	           through env (the slot, or a fake in tests).
//	scheduler  REST requests by priority (fills of held trades first, then the
//	           ticker, listings, background work) on a few workers; the
//	           exchange client budgets the weight from Binance's headers and
//	           pauses everything on 429/418.
//
// Ownership: a slot's sequences and connection belong to its goroutine; the
// session's manager owns the universe and changes a slot's symbols through
// slot.want; REST answers and ticker reads reach a slot through its mailbox,
// which never blocks the worker.
//
// # Sequence states
//
// Trade ids are Binance's aggTrade ids ("a"); the ticker reports raw trade ids,
// compared with the "l" of the last aggTrade handed over. Every transition that
// leaves Live holds the symbol's klines in its shard (shard.OpHold at the time
// of the last trade handed over: no kline from there on closes), and the return
// to Live lifts the hold; a hold older than Config.MaxHold is lifted anyway and
// the trades REST brings later become corrections.
//
//	state       event                            next        effects
//	Idle        follow (at start, or subscribed) Fresh       -
//	Idle        follow (listed while running)    Anchor      hold at since; REST trades since the listing
//	Fresh       ticker read after the connection Fresh       baseline: the symbol's last raw trade id
//	Fresh       trade, f = baseline+1 or none    Live        since = max(since, the connection's first trade's E); OpPartial(since):
//	                                                         first klines opening before since are partial; hand over
//	Fresh       trade, f > baseline+1            Anchor      held; REST trades since since (some were missed)
//	Fresh       connection lost                  Fresh       hold at since; baseline kept only if read before the last frame heard
//	Fresh       (lost) ticker: id = baseline     Fresh       lift hold: nothing traded while down
//	Fresh       (lost) ticker: more, or trade
//	            not continuing the baseline      Anchor      REST trades since since
//	Anchor      trade                            Anchor      held
//	Anchor      REST page                        Anchor      hand over trades since since, before the first held (OpPartial first, unless a listing)
//	Anchor      REST caught up with held         Live        hand over held; lift hold
//	Anchor      REST short of held               Gap         the rest as a gap
//	Anchor      REST empty, nothing held         Fresh       nothing traded yet: its first trade starts it
//	Live        trade a = last+1                 Live        hand over
//	Live        trade a <= last                  Live        duplicate (counted)
//	Live        trade a > last+1                 Gap         gap [last+1, a-1], a held; hold; REST fill
//	Live        connection lost                  Unverified  hold
//	Live        ticker: l > last's l             Live        suspect; after SuspectDelay without it on the stream: Gap (trailing)
//	Unverified  trade a = last+1                 Live        hand over; lift hold
//	Unverified  trade a > last+1                 Gap         gap [last+1, a-1], a held; REST fill
//	Unverified  ticker read TickerLag after the
//	            new connection: l = last's l     Live        lift hold (nothing traded while down)
//	Unverified  ... l > last's l                 Gap         gap [last+1, until l]; REST fill
//	Gap         trade a = from                   Gap/Live    hand over (the stream fills the gap itself)
//	Gap         trade a < from, or held already  Gap         duplicate
//	Gap         trade a > from                   Gap         held (sorted); to = first held - 1
//	Gap         REST page                        Gap/Live    hand over from..to; full page: next page
//	Gap         all of [from, to] handed over    Live        hand over held in order (a hole opens the next gap); lift hold
//	Gap         REST short, then its newest
//	            trade is after from              Gap/Live    ids no longer served: lost, counted, logged, OpMarkGap
//	Gap         REST short FillTries times over
//	            BogusAfter, newest before from   Gap/Live    the first held trade's id is bogus: dropped, counted, logged
//	Gap         connection lost                  Gap         resolves to Unverified instead of Live
//	Gap         REST error                       Gap         retry with backoff (an outage is not a loss)
//	Fresh       unsubscribed / delisted          Idle        -
//	Live, Unv.  unsubscribed / delisted          (leaving)   hold at the last trade; a ticker read asked for
//	(leaving)   ticker read sent after it:
//	            l = last's l                     Idle        OpRetire, then lift hold: no empty kline after its last trade
//	(leaving)   ... l > last's l                 Gap         the trailing trades, then the last word again
//	(leaving)   no ticker read within
//	            2 Verify + SuspectDelay          Gap         trailing: REST from last+1 until a short page, then OpRetire
//	Gap (trail) REST failing FillTries times
//	            over a minute                    Idle        OpRetire as it stands; counted, logged
//	Gap, Anchor unsubscribed / delisted          (leaving)   the gap is filled first
//	any         exit                             -           held trades counted as held at exit, logged
//
// Every stream trade ends in one bucket (Stats.Accounted): handed over,
// duplicate, unwanted (not followed), bogus, or held (at exit).
package feed
