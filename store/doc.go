// Package store keeps every kline in one SQLite database (data/klagg.db by default)
// so that a crash or a restart of the daemon changes nothing: Writer is the
// pipeline's sink into it, DB reads it back (the REST API, klagg export, klagg
// verify, the daemon's restart), and CSVDir is a crash-safe CSV sink beside it.
//
// # Files and locking
//
// The database is one SQLite file in WAL mode (plus its -wal and -shm files while in
// use). One process writes it: Open takes an exclusive flock(2) on FILE.lock, which
// the kernel releases when the process dies, so a second daemon on the same file
// fails at once with ErrLocked and the pid of the holder, and a crash leaves no
// stale lock. (SQLite's own locks last a transaction; locking_mode=EXCLUSIVE would
// also shut out readers.) Readers (OpenReadOnly, the sqlite3 shell) need no lock and
// run beside the writer.
//
// Open reads the file's header before SQLite touches it and refuses, changing
// nothing, a file that is empty, not SQLite, shorter than its header says
// (truncated), another program's (application_id is "klag"), or from a newer klagg
// (user_version above SchemaVersion). It never recreates a file that exists. A page
// damaged inside a sound file is found when it is read: reads return SQLite's
// "database disk image is malformed", and the writer gives up with it after
// Config.FailAfter. A read-only directory fails at the lock file, with the path.
//
// # Schema (version 2)
//
//	meta(key TEXT PRIMARY KEY, value TEXT)          -- created_by, created_at; bulk_load while one runs
//	series(id INTEGER PRIMARY KEY, market TEXT, symbol TEXT, interval TEXT,
//	       through INTEGER,                          -- largest last_agg_id ever stored, -1 none
//	       UNIQUE(market, symbol, interval))
//	klines(series INTEGER,                           -- series.id; a rowid table
//	       open_time INTEGER, close_time INTEGER,    -- Unix ms, close = last ms of the period
//	       open, high, low, close,                   -- decimals: INTEGER = value * 10^8,
//	       volume, quote_volume,                     --   or the exact decimal as TEXT when
//	       taker_buy_volume, taker_buy_quote_volume, --   that does not fit an int64
//	       count INTEGER,
//	       first_trade_id INTEGER, last_trade_id INTEGER, -- Binance's f and L; -1 when empty
//	       first_agg_id INTEGER, last_agg_id INTEGER,     -- aggTrade ids; -1 when empty
//	       closed INTEGER,                           -- 0 for the open kline
//	       flags INTEGER)                            -- shard.Flags bits
//	UNIQUE INDEX klines_series ON klines(series, open_time)   -- the key
//	INDEX klines_open ON klines(series) WHERE closed = 0      -- the open klines
//	marks(series INTEGER, open_time INTEGER, flags INTEGER)   -- flags a bulk load applies at its end
//	VIEW klines_view                                 -- names, UTC times, decimals as text, flag names
//
// Numbers are exact. A decimal column holds an INTEGER, the value in units of
// 10^-8 (60000.1 is 6000010000000), whenever the value has at most 8 decimals and
// that integer fits in 63 bits: every price up to 92,233,720,368, every volume up to
// that many coins, quote volumes with at most 8 decimals (most futures). Otherwise,
// and only then, it holds the exact decimal as TEXT in its shortest form
// ("184467440737.09551615", quote volumes with up to 16 decimals, saturated sums):
// the columns have no declared type, so SQLite keeps each value as it was written.
// Integers cost SQLite less than text, and the writer formats no decimal for them.
// klines_view shows every decimal as text ("0.0163", "12"), as version 1 stored it.
// flags is the shard.Flags bitmask (empty 1, corrected 2, overflow 4, gap 8, partial
// 16, late 32, rest 64, quiet 128); klines_view names them as Flags.String does,
// says open or closed, and whether the kline was built from trades or REST
// (FlagREST).
//
// Rows are appended to the table (rowid order), the cheapest insert SQLite has; the
// writer sorts each commit's closed klines by (series, open_time), so that a
// series' rows of one commit share pages and a range read touches fewer of them.
// The unique series index, the key, serves one series' range. (On klagg's write
// pattern a WITHOUT ROWID table keyed by (open_time, series) with the same index
// cost 20% more CPU per row, one keyed by (series, open_time) twice as much:
// bench/store-results.md.) New databases use 8 KiB pages (Config.PageSize).
//
// PRAGMA user_version is the schema version; migrations (one transaction each) bring
// an older file up to date when the writer opens it, and the view is recreated when
// a klagg with more flags opens it. Version 1 stored every decimal as TEXT in TEXT
// columns; the migration to 2 copies the table into typeless columns in (series,
// open_time) order, turning the texts that are plainly integers of 10^-8 units (at
// most 10 integer and 8 fractional digits) into INTEGERs and leaving the others
// text, which reads parse exactly.
//
// # Queries
//
// Query klines_view: its decimals are text; compare them with CAST(x AS REAL)
// (approximate) or in Go with DB.Klines (exact).
//
//	sqlite3 data/klagg.db "SELECT market, symbol, interval, through FROM series ORDER BY symbol, interval LIMIT 20;"
//	sqlite3 data/klagg.db "SELECT open_utc, open, high, low, close, volume, state, flags FROM klines_view WHERE symbol = 'BTCUSDT' AND interval = '1m' ORDER BY open_time DESC LIMIT 10;"
//	sqlite3 data/klagg.db "SELECT symbol, interval, count(*), min(open_utc), max(open_utc) FROM klines_view GROUP BY symbol, interval;"
//	sqlite3 data/klagg.db "SELECT symbol, interval, open_utc, flags FROM klines_view WHERE flag_bits & 60 ORDER BY open_time;"
//	sqlite3 data/klagg.db "SELECT symbol, interval, open_utc, last_agg_id FROM klines_view WHERE state = 'open';"
//	sqlite3 data/klagg.db "SELECT symbol, max(CAST(high AS REAL)) FROM klines_view WHERE interval = '1d' GROUP BY symbol;"
//
// (flag_bits & 60 selects the quality flags: overflow, gap, partial, late.)
//
// # Writing
//
// Writer.Kline is called on the pipeline's sink goroutine and never waits on the disk
// in steady state: closed klines, corrections (same key: the row is replaced) and
// marks (Kline.Mark: flags ORed into the stored row) are queued in order; running
// updates of open klines are coalesced, the latest state per series wins. A writer
// goroutine commits it all in one transaction every Config.CommitEvery (1 s), or
// sooner when Config.BatchRows (4,096) closed klines wait; so the open klines are
// checkpointed every second and at Close. While the writer commits, the queue
// grows, and the next commit takes all of it: commits are as large as the writer's
// pace requires, and a replay's klines are written while it runs rather than at
// its end. A full queue (Config.MaxQueue) makes Kline wait (backpressure, counted
// and logged): closed klines are never dropped. A failing commit (full or failing
// disk, a lock held elsewhere) is logged at once and retried with backoff; when it
// has failed for Config.FailAfter (30 s), Kline, Sync and Close return the error,
// and the daemon stops. Counters gives rows, batches, bytes, backpressure waits,
// write errors, retention deletions, compacted rows and the lag (age of the oldest
// event not committed) for metrics.
//
// The rows reach SQLite through its C API on the connection database/sql hands the
// writer (sqlite_cgo.go): one cgo call binds and inserts a whole run of rows, where
// the driver costs a cgo call and an allocation per value; reads come back the same
// way. sqlite_purego.go is the database/sql twin (the purego tag): every row
// through database/sql, as any driver takes them; make test runs the suite on it,
// and store/internal/drivers runs it on the pure-Go modernc.org/sqlite.
//
// Retention (Config.Retention, per interval) deletes closed klines older than the
// newest stored open time minus the interval's duration, on the writer goroutine, at
// most Config.RetentionBatch rows per transaction between commits.
//
// Compaction (Config.Compact, 1 h): the daemon's commits every second leave a
// series' klines one per commit, each on a page of its own, so a read of 1500 of
// them would touch 1500 pages. Once a window of event time is over (the newest
// closed kline opened a quarter window after its end), the writer rewrites that
// window's closed klines at the end of the table in (series, open_time) order, in
// one transaction between commits: an hour of a 1m series becomes 60 neighbouring
// rows. Rows and Through are unchanged; windows whose klines already came in long
// runs (a catch-up, a replay) are skipped. meta's compacted_until:MARKET says how
// far it got.
//
// # Bulk loads
//
// Config.Bulk makes the writer a bulk loader for a replay into the database: at
// NewWriter it drops the key index (noting bulk_load in meta, in the same
// transaction), so each row costs SQLite a table append only: no index seek, no
// index pages written at every commit. Corrections are appended like any row and
// marks wait in the marks table. Open klines wait in memory. Close then, in one
// transaction, removes the rows a later row of the same key replaced (the newest
// wins, as the upsert would have left it), builds the index in one sort, ORs the
// marks into their klines, and clears bulk_load; then it writes the open klines as
// a normal commit. Meanwhile Klines and LoadSeries fail with ErrBulkLoad. A load a
// crash interrupted is finished the same way by the next Open, before anything
// reads; its open klines are lost, and Through never counted them. Close costs a
// sort of the whole table, so a bulk load suits a replay into a new or small
// database, not the daemon. Commits keep synchronous = NORMAL: a bulk load trades
// no crash safety for speed.
//
// # Restart contract
//
// For each series (market, symbol, interval) the stored rows are always the state of
// that series' klines after some prefix of its aggTrades, and Series.Through (from
// LoadSeries) is the last aggTrade id of that prefix. The daemon resumes a series by
// applying to it, and to it alone, the trades with ids above its Through: nothing is
// counted twice and nothing is missed, whatever the moment of the crash. The writer
// keeps it so:
//
//   - every row is written whole, so its fields and its last_agg_id always come from
//     the same kline state, and a commit holds a prefix of the events the sink
//     received (the open states as of the same moment); within a commit the events
//     of one kline apply in the order received (the sort by key is stable);
//   - every open period's newest state is stored: the aggregator hands over a
//     symbol's changed open klines oldest period first, all at once, so while a
//     period is still open (its grace time, or a hold while missing trades are
//     fetched) and the next one trades, both rows are current, each until its
//     closed state replaces it; an open state never replaces a closed row, and one
//     of a period already closed is dropped;
//   - series.through is raised in the same transaction as the rows, from the rows
//     written only (a bulk load's open klines count when Close writes them), and
//     retention never lowers it.
//
// It relies on Binance's aggTrade ids growing with trade time within a symbol
// (klagg applies each symbol's trades in id order), so a later period never holds a
// smaller id than an earlier one.
package store
