package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klagg/klagg/shard"
)

// Errors Open and OpenReadOnly return (wrapped); test with errors.Is.
var (
	// ErrCorrupt: the file is not a SQLite database, or it is truncated.
	ErrCorrupt = errors.New("database file is corrupt or truncated")
	// ErrNotKlagg: a SQLite database that another program made.
	ErrNotKlagg = errors.New("not a klagg database")
	// ErrNewerSchema: a newer klagg wrote the database; this one cannot use it.
	ErrNewerSchema = errors.New("database schema is newer than this klagg")
	// ErrOlderSchema: a read-only open of a database the daemon has not migrated yet.
	ErrOlderSchema = errors.New("database schema is older than this klagg")
	// ErrLocked: another klagg writes the database.
	ErrLocked = errors.New("database is in use by another klagg")
	// ErrNotFound: a read-only open of a file that does not exist.
	ErrNotFound = errors.New("no such database")
)

// applicationID marks a klagg database in the SQLite header (PRAGMA application_id):
// "klag".
const applicationID = 0x6b6c6167

// SchemaVersion is the schema this klagg writes (PRAGMA user_version).
const SchemaVersion = 2

// migrations[i] moves a database from user_version i to i+1, in one transaction with
// the version bump. Append only: never edit a released step.
var migrations = []string{
	// 0 -> 1: the first schema.
	`CREATE TABLE meta(
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE series(
	id       INTEGER PRIMARY KEY,
	market   TEXT NOT NULL,
	symbol   TEXT NOT NULL,
	interval TEXT NOT NULL,
	through  INTEGER NOT NULL DEFAULT -1,
	UNIQUE(market, symbol, interval)
);
CREATE TABLE klines(
	series                 INTEGER NOT NULL,
	open_time              INTEGER NOT NULL,
	close_time             INTEGER NOT NULL,
	open                   TEXT NOT NULL,
	high                   TEXT NOT NULL,
	low                    TEXT NOT NULL,
	close                  TEXT NOT NULL,
	volume                 TEXT NOT NULL,
	quote_volume           TEXT NOT NULL,
	count                  INTEGER NOT NULL,
	taker_buy_volume       TEXT NOT NULL,
	taker_buy_quote_volume TEXT NOT NULL,
	first_trade_id         INTEGER NOT NULL,
	last_trade_id          INTEGER NOT NULL,
	first_agg_id           INTEGER NOT NULL,
	last_agg_id            INTEGER NOT NULL,
	closed                 INTEGER NOT NULL,
	flags                  INTEGER NOT NULL
);
CREATE UNIQUE INDEX klines_series ON klines(series, open_time);
CREATE INDEX klines_open ON klines(series) WHERE closed = 0;
INSERT INTO meta(key, value) VALUES ('created_by', 'klagg'), ('created_at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));`,
	// 1 -> 2: decimal columns without a type (INTEGER units of 10^-8 where they
	// fit, exact TEXT otherwise), rows copied in (series, open_time) order, and the
	// marks table of bulk loads.
	migrateV2(),
}

// migrateV2 is the 1 -> 2 step. The decimal columns of version 1 were TEXT columns
// (TEXT affinity turns an integer into text), so the table is copied into one
// whose decimal columns have no type. decimalUnits converts the texts that are
// plainly exact integers of 10^-8 units; any other text stays text, which readers
// parse exactly.
func migrateV2() string {
	var b strings.Builder
	b.WriteString(`DROP VIEW IF EXISTS klines_view;
CREATE TABLE klines_v2(` + klinesColumnsV2 + `);
INSERT INTO klines_v2(` + rowColumns + `)
SELECT series, open_time, close_time`)
	for _, c := range []string{"open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume"} {
		b.WriteString(",\n\t" + decimalUnits(c))
	}
	b.WriteString(`,
	count, first_trade_id, last_trade_id, first_agg_id, last_agg_id, closed, flags
FROM klines ORDER BY series, open_time;
DROP TABLE klines;
ALTER TABLE klines_v2 RENAME TO klines;
CREATE UNIQUE INDEX klines_series ON klines(series, open_time);
CREATE INDEX klines_open ON klines(series) WHERE closed = 0;
CREATE TABLE marks(series INTEGER NOT NULL, open_time INTEGER NOT NULL, flags INTEGER NOT NULL);`)
	return b.String()
}

// klinesColumnsV2 declares the klines table of schema version 2. The decimal
// columns have no type, so SQLite keeps each value as written: an INTEGER (the
// decimal times 10^8) or the decimal's TEXT.
const klinesColumnsV2 = `
	series                 INTEGER NOT NULL,
	open_time              INTEGER NOT NULL,
	close_time             INTEGER NOT NULL,
	open                   NOT NULL,
	high                   NOT NULL,
	low                    NOT NULL,
	close                  NOT NULL,
	volume                 NOT NULL,
	quote_volume           NOT NULL,
	taker_buy_volume       NOT NULL,
	taker_buy_quote_volume NOT NULL,
	count                  INTEGER NOT NULL,
	first_trade_id         INTEGER NOT NULL,
	last_trade_id          INTEGER NOT NULL,
	first_agg_id           INTEGER NOT NULL,
	last_agg_id            INTEGER NOT NULL,
	closed                 INTEGER NOT NULL,
	flags                  INTEGER NOT NULL
`

// decimalUnits is the SQL that turns the version 1 decimal text in column c into
// its integer of 10^-8 units when that is plainly exact: digits, at most one point
// with 1 to 8 digits after it, at most 10 digits before it (so the product stays
// far below 2^63). Anything else stays as it is.
func decimalUnits(c string) string {
	p := "instr(" + c + ", '.')"
	return strings.NewReplacer("X", c, "P", p).Replace(`CASE WHEN typeof(X) = 'text' AND X GLOB '[0-9]*' AND X NOT GLOB '*[^0-9.]*'
		AND ((P = 0 AND length(X) <= 10) OR (P BETWEEN 2 AND 11 AND length(X) - P BETWEEN 1 AND 8 AND instr(substr(X, P + 1), '.') = 0))
	THEN CAST(substr(X, 1, instr(X || '.', '.') - 1) AS INTEGER) * 100000000
		+ CAST(substr(substr(X, instr(X || '.', '.') + 1) || '00000000', 1, 8) AS INTEGER)
	ELSE X END`)
}

// decimalText is the SQL that shows decimal column c as its exact decimal text:
// integers of 10^-8 units formatted in the shortest form ("0.0163", "12"), text as
// it is.
func decimalText(c string) string {
	return strings.ReplaceAll(`CASE typeof(X) WHEN 'integer' THEN rtrim(rtrim(printf('%d.%08d', X / 100000000, X % 100000000), '0'), '.') ELSE X END`, "X", c)
}

// viewSQL is the readable view over klines: names instead of ids, UTC times, flag
// names (shard.Flags.String) and where the kline came from. It is rebuilt whenever
// the writer opens a database whose view differs (a klagg with more flags).
func viewSQL() string {
	var b strings.Builder
	b.WriteString(`CREATE VIEW klines_view AS
SELECT s.market, s.symbol, s.interval,
	k.open_time, strftime('%Y-%m-%d %H:%M:%S', k.open_time / 1000, 'unixepoch') AS open_utc,
	k.close_time, ` + decimalText("k.open") + ` AS open, ` + decimalText("k.high") + ` AS high,
	` + decimalText("k.low") + ` AS low, ` + decimalText("k.close") + ` AS close,
	` + decimalText("k.volume") + ` AS volume, ` + decimalText("k.quote_volume") + ` AS quote_volume, k.count,
	` + decimalText("k.taker_buy_volume") + ` AS taker_buy_volume,
	` + decimalText("k.taker_buy_quote_volume") + ` AS taker_buy_quote_volume,
	k.first_trade_id, k.last_trade_id, k.first_agg_id, k.last_agg_id,
	CASE k.closed WHEN 0 THEN 'open' ELSE 'closed' END AS state,
	CASE WHEN k.flags & `)
	fmt.Fprintf(&b, "%d", shard.FlagREST)
	b.WriteString(` THEN 'rest' ELSE 'trades' END AS source,
	coalesce(nullif(rtrim(`)
	first := true
	for bit := range 8 {
		name := shard.Flags(1 << bit).String()
		if name == "" || name == "-" {
			continue
		}
		if !first {
			b.WriteString(" || ")
		}
		first = false
		fmt.Fprintf(&b, "CASE WHEN k.flags & %d THEN '%s|' ELSE '' END", 1<<bit, name)
	}
	b.WriteString(`, '|'), ''), '-') AS flags, k.flags AS flag_bits
FROM klines k JOIN series s ON s.id = k.series`)
	return b.String()
}

// header is what Open reads from a database file before SQLite touches it.
type header struct {
	pageSize  int64
	pages     int64 // 0 when the header's count is not valid
	userVer   uint32
	appID     uint32
	hasSchema bool
}

// readHeader checks that path is a whole SQLite database file and returns its
// header. It never writes. A missing file returns an error wrapping os.ErrNotExist.
func readHeader(path string) (header, error) {
	var h header
	f, err := os.Open(path)
	if err != nil {
		return h, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return h, fmt.Errorf("cannot stat database %s: %w", path, err)
	}
	size := st.Size()
	if size == 0 {
		return h, fmt.Errorf("cannot open database %s: the file is empty (a crash while it was created?); remove it to start a new database: %w", path, ErrCorrupt)
	}
	var b [100]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return h, fmt.Errorf("cannot open database %s: %d bytes, shorter than a SQLite header: %w", path, size, ErrCorrupt)
	}
	if string(b[:16]) != "SQLite format 3\x00" {
		return h, fmt.Errorf("cannot open database %s: not a SQLite database (bad header): %w", path, ErrCorrupt)
	}
	h.pageSize = int64(binary.BigEndian.Uint16(b[16:18]))
	if h.pageSize == 1 {
		h.pageSize = 65536
	}
	if h.pageSize < 512 || h.pageSize&(h.pageSize-1) != 0 {
		return h, fmt.Errorf("cannot open database %s: page size %d in the header: %w", path, h.pageSize, ErrCorrupt)
	}
	change := binary.BigEndian.Uint32(b[24:28])
	validFor := binary.BigEndian.Uint32(b[92:96])
	if change == validFor {
		h.pages = int64(binary.BigEndian.Uint32(b[28:32]))
	}
	if size%h.pageSize != 0 {
		return h, fmt.Errorf("cannot open database %s: %d bytes is not a whole number of %d-byte pages (truncated?): %w", path, size, h.pageSize, ErrCorrupt)
	}
	if h.pages > 0 && size < h.pages*h.pageSize {
		return h, fmt.Errorf("cannot open database %s: the header counts %d pages of %d bytes, the file holds %d (truncated): %w", path, h.pages, h.pageSize, size/h.pageSize, ErrCorrupt)
	}
	h.userVer = binary.BigEndian.Uint32(b[60:64])
	h.appID = binary.BigEndian.Uint32(b[68:72])
	h.hasSchema = binary.BigEndian.Uint32(b[40:44]) != 0 // schema cookie: 0 in a database without tables
	if h.appID != applicationID && (h.appID != 0 || h.hasSchema || h.userVer != 0) {
		return h, fmt.Errorf("cannot open database %s: application id %#x: %w", path, h.appID, ErrNotKlagg)
	}
	if h.userVer > SchemaVersion {
		return h, fmt.Errorf("cannot open database %s: schema version %d, this klagg knows up to %d; upgrade klagg: %w", path, h.userVer, SchemaVersion, ErrNewerSchema)
	}
	return h, nil
}

// migrate brings the database on conn to SchemaVersion and refreshes the view. It
// runs on the writer's connection, holding the lock file.
func migrate(ctx context.Context, conn *sql.Conn) error {
	var ver int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&ver); err != nil {
		return fmt.Errorf("cannot read schema version: %w", err)
	}
	if ver > SchemaVersion {
		return fmt.Errorf("cannot use database: schema version %d, this klagg knows up to %d; upgrade klagg: %w", ver, SchemaVersion, ErrNewerSchema)
	}
	for ; ver < SchemaVersion; ver++ {
		if err := inTx(ctx, conn, func() error {
			if _, err := conn.ExecContext(ctx, migrations[ver]); err != nil {
				return err
			}
			if ver == 0 {
				if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d", applicationID)); err != nil {
					return err
				}
			}
			_, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", ver+1))
			return err
		}); err != nil {
			return fmt.Errorf("cannot migrate database schema from version %d to %d: %w", ver, ver+1, err)
		}
	}
	want := viewSQL()
	var have string
	err := conn.QueryRowContext(ctx, "SELECT sql FROM sqlite_schema WHERE type = 'view' AND name = 'klines_view'").Scan(&have)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("cannot read the klines view: %w", err)
	}
	if have == want {
		return nil
	}
	return inTx(ctx, conn, func() error {
		if _, err := conn.ExecContext(ctx, "DROP VIEW IF EXISTS klines_view"); err != nil {
			return fmt.Errorf("cannot drop the klines view: %w", err)
		}
		if _, err := conn.ExecContext(ctx, want); err != nil {
			return fmt.Errorf("cannot create the klines view: %w", err)
		}
		return nil
	})
}

// inTx runs f in a write transaction on conn.
func inTx(ctx context.Context, conn *sql.Conn, f func() error) error {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	if err := f(); err != nil {
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		return err
	}
	return nil
}
