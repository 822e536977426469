// Package fakex is klagg's fake Binance exchange. Its Generator is a synthetic market:
// Binance-layout aggTrade frames (futures or spot) with consecutive ids per symbol,
// random-walk prices and Zipf-skewed symbols, made without allocating. The same
// feed drives the `make run` demo, the end-to-end benchmark and the capacity test.
//
// # Server
//
// Server speaks Binance's protocol on loopback (Config.Market "futures" or "spot"):
//
//   - WebSocket: futures /market/stream?streams=a/b (combined, each event in
//     {"stream":..,"data":..}), /market/ws and /market/ws/a/b (raw events); the same
//     paths without /market are accepted but never deliver aggTrades (Binance's 2026
//     routing), other replayed streams still flow there. Spot: /stream and /ws.
//     SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS; bad JSON is answered with error
//     code 2 and id null. Stream names are matched exactly (lower-case symbol); an
//     unknown name is accepted and silent. More than 10 (futures) / 5 (spot) incoming
//     messages (text, ping, pong) within a second close the connection with 1008.
//     The server pings every Config.PingEvery and closes a connection whose oldest
//     unanswered ping gets no matching pong within Config.PongTimeout.
//   - REST under /fapi/v1/ or /api/v3/: exchangeInfo, aggTrades, klines (fixed
//     intervals 1m..1d computed from the retained history), time, ping. Every
//     response carries X-MBX-USED-WEIGHT-1M; the weight window is the minute of the
//     wall clock (not the data clock, which a fast replay would race through).
//     aggTrades serves withheld ids too; a fromId older than the retained history
//     (Config.History) gets [] so that a gap is really unfillable.
//   - Universe: a delisted symbol stays in exchangeInfo as SETTLING (futures) or BREAK
//     (spot) and stops trading; a symbol under a list= fault is absent until listed.
//   - Clock: synthetic, the Generator's data time (it starts at the wall clock and
//     advances at Config.Rate, so it follows the wall clock when paced); replay, the
//     trade time of the last trade sent, as recorded.
//
// # Data path and ownership
//
// One producer goroutine generates or replays frames in batches of up to 512,
// records every aggTrade in the per-symbol history (Server.mu), and appends each
// frame, already framed as a WebSocket message, to the outbound queue of every
// subscribed connection (conn.mu). Each connection has a writer goroutine that swaps
// the queue out and writes it with one syscall, and a reader goroutine for control
// messages. A queue above Config.QueueBytes makes the producer wait for that
// connection up to Config.SlowTimeout, then the connection is dropped
// (Stats.ConnsSlow): slow readers throttle the feed for a bounded time only.
//
// Faults (ParseFaults, FaultHelp) are injected by the producer on each connection's
// queue (drop, stall, malformed, dup, shutdown), by the producer for all (withhold,
// list, delist), by the reader (ignorepings) and by REST (ratelimit).
package fakex
