package store

import "time"

// Config configures a store: the database file and its writer. The zero value is not
// usable; start from DefaultConfig.
type Config struct {
	// Path is the database file; its directory is created when missing.
	Path string
	// Market names the klines the Writer stores ("futures", "spot"): series are keyed
	// by (market, symbol, interval).
	Market string
	// Driver is the database/sql driver: "sqlite3" (github.com/mattn/go-sqlite3, linked
	// into this package) or "sqlite" (modernc.org/sqlite, when a program links it).
	Driver string

	// CommitEvery is how often the writer commits what is queued: closed klines and the
	// newest state of every open kline (coalesced), so a crash loses at most this much
	// (and the daemon recomputes it from the trades after Series.Through).
	CommitEvery time.Duration
	// BatchRows commits early when this many closed klines are queued. It is small
	// (4,096) so that a replay's klines are written while it runs: when the writer
	// is busy the queue grows and the next commit takes all of it.
	BatchRows int
	// MaxQueue is how many closed klines may wait for the writer before Kline blocks
	// (backpressure; each costs about 160 bytes, twice: the queue is double-buffered).
	MaxQueue int
	// FailAfter is how long writes may keep failing (full or failing disk, locked
	// database) before the writer gives up and Kline and Close return the error.
	FailAfter time.Duration
	// RetryMin and RetryMax bound the backoff between two attempts of a failed commit.
	RetryMin, RetryMax time.Duration
	// BusyTimeout is how long a connection waits for a lock SQLite holds elsewhere
	// (a reader's checkpoint, a sqlite3 shell in a write transaction).
	BusyTimeout time.Duration
	// CacheBytes is the writer connection's page cache.
	CacheBytes int64
	// MmapBytes is how much of the file every connection reads through a memory map
	// (PRAGMA mmap_size) instead of read calls: a 1500-kline read of klines the
	// daemon wrote one per commit costs a third of the time, one of compacted or
	// replayed klines a little less (bench/store-results.md). 0, the default, turns it off: a
	// map turns an I/O error, or the file truncated under a running process, into a
	// SIGBUS crash instead of an error.
	MmapBytes int64
	// PageSize is the page size of a new database (an existing one keeps its own):
	// 8 KiB pages cost less CPU per written row than SQLite's default 4 KiB
	// (bench/store-results.md).
	PageSize int
	// Bulk makes the Writer a bulk loader, for a replay into the database: the key
	// index is dropped while it runs, rows are appended, and Close rebuilds the
	// index (deduplicating keys written twice: the newest row wins), applies the
	// marks and writes the open klines, which wait in memory until then. Reads
	// (Klines, LoadSeries) fail with ErrBulkLoad meanwhile, and a load that a crash
	// interrupts is finished by the next Open (Series.Through then counts only the
	// committed closed klines, so the restart contract holds). Retention waits for
	// Close. Close costs a sort of the whole table: meant for a replay into a new
	// or small database, not for the daemon.
	Bulk bool
	// MaxBytes caps the database file (SQLite's max_page_count); 0 is no cap. Past it
	// writes fail as on a full disk.
	MaxBytes int64

	// Retention maps an interval name to how long its closed klines are kept, counted
	// back from the newest close time the writer stored (event time, so a replay of
	// old data keeps it); absent or 0 keeps them forever. Example: {"1s": 24 * time.Hour}.
	Retention map[string]time.Duration
	// Compact is the window of event time whose closed klines the writer rewrites in
	// (series, open_time) order once it is over, so that a range read of a series
	// the daemon wrote one kline per commit touches a page or two per window
	// instead of a page per kline (compact.go); 0 turns it off. The writer checks
	// every RetentionEvery.
	Compact time.Duration
	// RetentionEvery is how often the writer looks for klines past their retention
	// and windows to compact.
	RetentionEvery time.Duration
	// RetentionBatch is the most rows one retention transaction deletes, so that
	// deleting a day of 1s klines never holds up the commits of new ones.
	RetentionBatch int
}

// DefaultDriver is the driver DefaultConfig picks (see bench/store-results.md).
const DefaultDriver = "sqlite3"

// DefaultConfig returns the daemon's defaults: data/klagg.db, futures.
func DefaultConfig() Config {
	return Config{
		Path:           "data/klagg.db",
		Market:         "futures",
		Driver:         DefaultDriver,
		CommitEvery:    time.Second,
		BatchRows:      4096,
		MaxQueue:       1 << 18,
		FailAfter:      30 * time.Second,
		RetryMin:       100 * time.Millisecond,
		RetryMax:       5 * time.Second,
		BusyTimeout:    5 * time.Second,
		CacheBytes:     64 << 20,
		PageSize:       8192,
		RetentionEvery: 10 * time.Second,
		RetentionBatch: 5_000,
		Compact:        time.Hour,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Path == "" {
		c.Path = d.Path
	}
	if c.Market == "" {
		c.Market = d.Market
	}
	if c.Driver == "" {
		c.Driver = d.Driver
	}
	if c.CommitEvery <= 0 {
		c.CommitEvery = d.CommitEvery
	}
	if c.BatchRows <= 0 {
		c.BatchRows = d.BatchRows
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = d.MaxQueue
	}
	if c.FailAfter <= 0 {
		c.FailAfter = d.FailAfter
	}
	if c.RetryMin <= 0 {
		c.RetryMin = d.RetryMin
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(d.RetryMax, c.RetryMin)
	}
	if c.BusyTimeout <= 0 {
		c.BusyTimeout = d.BusyTimeout
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = d.CacheBytes
	}
	if c.PageSize <= 0 {
		c.PageSize = d.PageSize
	}
	if c.RetentionEvery <= 0 {
		c.RetentionEvery = d.RetentionEvery
	}
	if c.RetentionBatch <= 0 {
		c.RetentionBatch = d.RetentionBatch
	}
	return c
}
