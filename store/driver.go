package store

import (
	"database/sql"
	"fmt"
	"net/url"
	"strconv"
	"sync"

	// The cgo driver: the faster of the two on klagg's write pattern
	// (bench/store-results.md). The pure-Go driver is benchmarked from a module of
	// its own (store/internal/drivers) so that it stays out of go.mod.
	sqlite3 "github.com/mattn/go-sqlite3"
)

// mmapDrivers holds the mattn drivers registered with a memory-mapping hook, by size:
// mattn takes no mmap_size in its DSN, and database/sql may open a connection at any
// time, so every connection must set it itself.
var mmapDrivers sync.Map // int64 -> string

// driverName returns the database/sql driver that opens connections with cfg's
// per-connection settings.
func driverName(cfg Config) string {
	if cfg.Driver != "sqlite3" || cfg.MmapBytes <= 0 {
		return cfg.Driver
	}
	if name, ok := mmapDrivers.Load(cfg.MmapBytes); ok {
		return name.(string)
	}
	name := "klagg-sqlite3-mmap-" + strconv.FormatInt(cfg.MmapBytes, 10)
	pragma := "PRAGMA mmap_size = " + strconv.FormatInt(cfg.MmapBytes, 10)
	if _, loaded := mmapDrivers.LoadOrStore(cfg.MmapBytes, name); !loaded {
		sql.Register(name, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
			_, err := c.Exec(pragma, nil)
			return err
		}})
	}
	return name
}

// dsn returns the data source name that opens cfg.Path: read-only or not, with a
// busy timeout and, for modernc.org/sqlite, the memory map. The writer runs its
// other settings as PRAGMAs on its connection.
func dsn(cfg Config, readOnly bool) (string, error) {
	q := url.Values{}
	mode := "rwc"
	if readOnly {
		mode = "ro"
	}
	q.Set("mode", mode)
	ms := strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)
	switch cfg.Driver {
	case "sqlite3": // github.com/mattn/go-sqlite3; mmap by driverName's hook
		q.Set("_busy_timeout", ms)
		// database/sql hands a connection to one goroutine at a time: SQLite's
		// per-connection mutex is pure cost (7% of a bulk write's CPU, perf).
		q.Set("_mutex", "no")
		if readOnly {
			q.Set("_query_only", "1")
		}
	case "sqlite": // modernc.org/sqlite
		q.Add("_pragma", "busy_timeout("+ms+")")
		if readOnly {
			q.Add("_pragma", "query_only(1)")
		}
		if cfg.MmapBytes > 0 {
			q.Add("_pragma", "mmap_size("+strconv.FormatInt(cfg.MmapBytes, 10)+")")
		}
	default:
		return "", fmt.Errorf("cannot open store: unknown driver %q (want sqlite3 or sqlite)", cfg.Driver)
	}
	u := url.URL{Scheme: "file", Opaque: (&url.URL{Path: cfg.Path}).EscapedPath(), RawQuery: q.Encode()}
	return u.String(), nil
}
