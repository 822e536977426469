// Package api serves klagg's klines the way Binance serves its own, so that a
// program that already speaks Binance's kline API (a trading bot, a Binance
// client library such as go-binance or ccxt, a charting front end) points its
// base URL at klagg and works unchanged, with prompt closes and the daemon's
// custom intervals; operators get metrics, health, profiles and a live chart.
//
// # Endpoints
//
//   - REST, Binance's formats and errors: GET /fapi/v1/klines (futures) or
//     /api/v3/klines (spot) with symbol, interval, startTime, endTime, limit
//     (and spot's timeZone, UTC only); ping, time and exchangeInfo under
//     /api/v3, /fapi/v1 and /dapi/v1 (only the market's own prefix lists
//     symbols). Rows are History's closed klines merged with the klines the
//     server saw published (the still-open one last), so an answer is current
//     even when the store lags.
//   - WebSocket, Binance's streams: /ws, /ws/<stream>/..., /stream?streams=a/b
//     (events wrapped in {"stream","data"}), each also under the futures
//     routes /market, /public and /private; SUBSCRIBE, UNSUBSCRIBE,
//     LIST_SUBSCRIPTIONS, SET_PROPERTY and GET_PROPERTY ("combined"). Streams are
//     <symbol>@kline_<interval> for every configured interval; klines flow on
//     every route (Binance's futures send them on /market only: klagg is
//     lenient so that clients built before that routing keep working). Open
//     klines are sent at Binance's cadence (Config.Cadence, or every change);
//     a closing event (x: true) leaves the moment Publish hands it over.
//   - Operations: /metrics (Prometheus text, the Config.Metrics set plus
//     process metrics), /healthz, /readyz, /debug/pprof/ (trusted requests,
//     or Config.AdminListen), and the chart page at / with /klagg/v1/info and
//     /klagg/v1/status.
//
// # Data path and ownership
//
// Publish (the daemon's sink goroutine) copies a kline into a single-producer
// ring; the hub goroutine drains it, keeps each stream's recent klines for
// REST, paces open-kline updates per stream and, for each event, encodes one
// WebSocket frame per framing (raw, combined) that some subscriber needs, then
// appends that same frame to each subscriber's queue. Every connection has a
// writer goroutine (one writev per batch, pings, timeouts) and a reader
// goroutine (control messages, rate limit). A connection's queue coalesces
// open-kline updates per stream, never drops a closing event, and a client
// whose queue still exceeds Config.SendQueue is disconnected with the reason.
//
// Lock order: conn.mu before Server.regMu; stream.mu, Server.connsMu and the
// spill list's mutex are leaves. The hub never takes regMu while it holds a
// conn.mu.
//
// # Security
//
// The server binds loopback by default; a non-loopback address needs a token
// (Config.Token: path prefix /t/<token>, X-Klagg-Token or a Bearer header) or
// Config.Open. Every parameter is validated; request headers, query strings,
// WebSocket messages and per-connection queues are bounded; reads and writes
// have timeouts; handlers recover from panics (counted and logged as BUG).
package api
