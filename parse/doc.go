// Package parse turns one Binance WebSocket text frame, one data.binance.vision
// CSV row or one REST response into fixed-size [Trade] values, without
// allocating, without float64 and without panicking on any input.
//
// # Engines
//
// A [Decoder] first runs [DecodeFast], a single-pass scanner for the two
// canonical aggTrade layouts Binance sends (futures key order
// e,E,a,s,p,q,f,l,T,m and spot key order e,E,s,a,p,q,f,l,T,m,M; no whitespace,
// no escapes), either bare or wrapped in a combined-stream envelope
// {"stream":...,"data":...}. Anything off that layout makes DecodeFast return
// [ErrNotCanonical] and the Decoder falls back to a general engine. DecodeFast
// itself reads a canonical aggTrade in one straight line first, eight bytes at a
// time (swar.go: digits, the quotes that close strings, symbols packed into two
// words and looked up in an open-addressing table); a frame that line leaves
// (a number or symbol of an uncommon shape, any error) is read again field by
// field and validated like every other engine's, so the two agree by
// construction. With
// [EngineAuto] that is the pure-Go general scanner for frames up to 64 KiB
// (no allocation unless a string holds escapes) and simdjson-go
// ([Decoder.DecodeSIMD], when the CPU has AVX2 and CLMUL) above. Measured
// here (see autoGeneralMax and BenchmarkAutoCrossover), simdjson-go is slower
// on small frames and on all-market arrays, ties at best on large depth
// frames, and allocates, so with the default MaxFrame (64 KiB) it never sees a
// frame; [ExchangeInfoSymbols] still uses it for whole documents.
// [EngineSIMD] parses every frame with simdjson-go. [DecodeStd] is the
// encoding/json reference twin, used by the differential tests.
//
// # Semantics shared by every engine
//
// A frame must be valid UTF-8 ([ErrInvalidUTF8]) and valid JSON ([ErrMalformed]),
// whatever event it carries: invalid JSON is malformed before it is "other" (a
// frame that is not JSON says nothing reliable about its kind; only DecodeFast
// classifies lazily, see below). A top-level value that is not an object is KindOther. When the top-level
// object has no string-valued "e" key but has a string-valued "stream" and a
// "data" key, the event is the value of "data" (combined stream), otherwise the
// event is the top-level object. The Kind is then taken from the event's
// string-valued "e" ("aggTrade", "depthUpdate", "bookTicker", "kline",
// "continuous_kline", "markPriceUpdate", "24hrTicker", "24hrMiniTicker",
// "forceOrder", "trade"); without "e" a stream name containing "@bookTicker"
// gives KindBookTicker (spot bookTicker events carry no "e"), an object with
// "id" and "result" or "error" gives KindResult, anything else KindOther.
// Duplicate keys: the last one wins, as in encoding/json.
//
// An aggTrade event needs E,s,a,p,q,f,l,T (and m); extra keys are ignored.
// Errors are checked in a fixed order so every engine reports the same reason:
// a missing key ([ErrMissingField]); a key with the wrong JSON type
// ([ErrMalformed]); the integers a,f,l,T,E in that order (JSON integers, "-0"
// counts as 0; a fraction or exponent is [ErrBadNumber], a negative value
// [ErrNegative], more than int64 [ErrOutOfRange]); p then q (see below);
// price zero ([ErrZeroPrice]); quantity zero ([ErrZeroQuantity]); f > l, or
// l-f >= 2^40 ([ErrBadTradeRange]: one aggTrade never aggregates a trillion
// raw trades, and the bound keeps [Trade.Count] in 1..2^40); T or E outside
// 1..2100-01-01 ([ErrBadTimestamp]); the symbol ([ErrUnknownSymbol]), matched
// exactly against the [Symbols] table: Binance sends upper-case symbols only, so
// "btcusdt" is an unknown symbol, never BTCUSDT (case folding belongs to file
// names and command-line flags, upper-cased by their readers before they reach
// the table).
//
// Prices and quantities are strings of the form [0-9]+(\.[0-9]+)? without
// leading zeros ("0.5" is fine, "00.5" and "007" are not): empty strings, signs
// ([ErrNegative] for a leading '-'), exponents, ".5", "5." are [ErrBadNumber];
// more than 12 integer digits or a non-zero digit after the 8th fractional one
// is [ErrTooManyDigits]; a value above the Decimal range is [ErrOutOfRange].
//
// The general engine, simdjson-go ([Decoder.DecodeSIMD]) and [DecodeStd] agree
// on every input: same Kind, same error, same Trade. simdjson-go is lax on a few
// invalid documents (stray bytes, malformed \u escapes, "-07.5") and refuses a few
// valid ones (lone UTF-16 surrogate escapes, numbers beyond float64, nesting
// deeper than 128); DecodeSIMD rejects the former itself and hands the latter
// to the general engine, so neither shows. FuzzDecode holds them to it.
//
// Lazy classification: for kinds other than aggTrade DecodeFast reads only what
// it needs to name the kind (the "e" value, or a flat spot bookTicker object)
// and does not validate the rest of the frame; the general engines validate
// everything. So a Decoder on EngineAuto or EngineFast agrees with them on every
// frame for aggTrade, and on the Kind of any valid frame whose keys are unique
// and whose envelope holds only "stream" and "data"; a frame that opens like a
// canonical non-aggTrade event but is invalid JSON further on is that kind, not
// malformed. Those lazy kinds are ones the daemon only counts; what it acts on
// (aggTrades, replies, serverShutdown, which exchange.IsServerShutdown parses
// again) is validated in full.
//
// # Ownership
//
// A Trade holds no pointers and never aliases the frame, so the caller may
// reuse the frame buffer as soon as a decode function returns. A Decoder
// belongs to one goroutine; [SymbolTable] may be read from any goroutine.
package parse
