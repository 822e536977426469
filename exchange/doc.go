// Package exchange speaks Binance's market-data protocol, client side, for
// USD-M futures and spot: stream names and WebSocket URLs, SUBSCRIBE messages
// and their replies, a WebSocket connection (Conn) built on gobwas/ws's
// low-level frame API, the limits Binance enforces (messages per second,
// connection attempts, REST request weight) and a REST client (Client) for
// exchangeInfo, aggTrades, klines and server time.
//
// Layers, bottom up:
//
//   - market.go: Market, Endpoints, Limits and the pure functions that build
//     names, URLs and control messages (SubscribeMessage, ParseReply,
//     IsServerShutdown). No I/O.
//   - limiter.go: Backoff (exponential, jittered), DialLimiter (connection
//     attempts per IP window) and the per-connection message window.
//   - conn.go: Conn, one WebSocket connection. Read returns one message,
//     reassembled from its fragments into the caller's buffer, or no message
//     (nil) after a control frame between messages, so a polling reader never
//     waits on a lone ping; it answers pings and close frames and does not
//     allocate in steady state. WriteText is rate limited, and so is Ping, the
//     client's own ping: with UnansweredPing it is a liveness check of the
//     server that needs no REST.
//   - client.go: Client, the REST client: weight accounting from the
//     X-MBX-USED-WEIGHT-1M header, 429/418 handling with a ban shared by every
//     request of the client, bounded retries of transient errors.
//
// Goroutines: one goroutine reads a Conn; any goroutine may call WriteText,
// Ping, UnansweredPing, Close and Stats. A Client, a DialLimiter and their Stats are safe for
// concurrent use; a Backoff is not.
//
// The package does not log: it returns errors wrapping its sentinels and
// exposes counters (ConnStats, ClientStats) that the pipeline turns into logs
// and metrics.
package exchange
