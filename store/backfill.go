package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/klagg/klagg/shard"
)

// History backfill: the klines of the periods before the daemon followed a
// series come from Binance's REST klines, never from trades. They are stored
// closed and flagged shard.FlagREST, beside the rows the pipeline's Writer
// stores, under these rules (one statement, restKlineSQL):
//
//	stored row                                   a REST kline of the same key
//	none                                         inserted
//	REST (FlagREST)                              replaced (the newest answer wins)
//	from trades, closed, flagged gap or partial  replaced: REST's is whole (FlagREST then)
//	from trades, otherwise                       kept: at least as good, and it carries the aggTrade ids
//	open (closed = 0)                            replaced: an earlier run left it open (see below)
//
// The Writer's own upsert replaces any row of its key, so a kline built from
// trades always wins over a REST one, whichever comes first. The backfill asks
// only for periods before the first kline the running pipeline builds, so an
// open row it covers was left by a run that stopped and did not resume that
// symbol: nothing will ever close it, and REST's kline is the whole period. REST klines carry
// no aggTrade ids (-1) and never raise Series.Through: the restart contract,
// which is about trades, is untouched.
//
// PutREST writes one page in one short transaction on a connection of its own;
// the Writer's commits wait for it through SQLite's busy timeout. A page of 1000
// klines holds the write lock for a few milliseconds (BenchmarkBackfillPutREST),
// against a Writer commit every second.

// ErrBadREST: a REST kline that cannot be stored as it is (a decimal that does
// not parse exactly, an open or close time off the interval's grid). Nothing of
// its page is stored.
var ErrBadREST = errors.New("bad REST kline")

// RESTKline is one kline of Binance's REST klines answer, its numbers as Binance
// printed them. Its fields are exchange.RESTKline's, in the same order, so that
// one converts into the other (store imports no exchange package).
type RESTKline struct {
	OpenTime            int64 // Unix ms
	Open                string
	High                string
	Low                 string
	Close               string
	Volume              string
	CloseTime           int64 // Unix ms, the last ms of the period
	QuoteVolume         string
	Trades              int64
	TakerBuyVolume      string
	TakerBuyQuoteVolume string
}

// restKlineSQL is the upsert of the table above.
var restKlineSQL = insertSQL + upsertTail + " WHERE klines.closed = 0 OR (klines.flags & " +
	strconv.Itoa(int(shard.FlagREST|shard.FlagGap|shard.FlagPartial)) + ") != 0"

// ParseRESTKline fills dst with r as a closed kline of iv flagged FlagREST
// (and FlagEmpty when no trade was made in it). Symbol and Interval are left
// as they were. It fails with ErrBadREST when a number is not an exact decimal
// or the times are off iv's grid.
func ParseRESTKline(dst *shard.Kline, r *RESTKline, iv shard.Interval) error {
	if iv.OpenTime(r.OpenTime) != r.OpenTime || iv.CloseTime(r.OpenTime) != r.CloseTime {
		return fmt.Errorf("cannot parse %s REST kline opening at %d closing at %d: off the interval's grid: %w", iv.Name, r.OpenTime, r.CloseTime, ErrBadREST)
	}
	if r.Trades < 0 {
		return fmt.Errorf("cannot parse %s REST kline opening at %d: %d trades: %w", iv.Name, r.OpenTime, r.Trades, ErrBadREST)
	}
	k := shard.Kline{Symbol: dst.Symbol, Interval: dst.Interval, Closed: true, Flags: shard.FlagREST,
		OpenTime: r.OpenTime, CloseTime: r.CloseTime, Count: r.Trades,
		FirstTradeID: -1, LastTradeID: -1, FirstAggID: -1, LastAggID: -1}
	if r.Trades == 0 {
		k.Flags |= shard.FlagEmpty
	}
	var err error
	for _, f := range []struct {
		name string
		s    string
		dst  *shard.Uint128
		sc   int
	}{
		{"volume", r.Volume, &k.Volume, volumeScale},
		{"quote volume", r.QuoteVolume, &k.QuoteVolume, quoteScale},
		{"taker buy volume", r.TakerBuyVolume, &k.TakerBuyVolume, volumeScale},
		{"taker buy quote volume", r.TakerBuyQuoteVolume, &k.TakerBuyQuoteVolume, quoteScale},
	} {
		if *f.dst, err = parseUint128([]byte(f.s), f.sc); err != nil {
			return fmt.Errorf("cannot parse %s REST kline opening at %d: %s: %w: %w", iv.Name, r.OpenTime, f.name, ErrBadREST, err)
		}
	}
	for i, p := range [4]string{r.Open, r.High, r.Low, r.Close} {
		d, err := parseDecimal([]byte(p))
		if err != nil {
			return fmt.Errorf("cannot parse %s REST kline opening at %d: price %d: %w: %w", iv.Name, r.OpenTime, i, ErrBadREST, err)
		}
		switch i {
		case 0:
			k.Open = d
		case 1:
			k.High = d
		case 2:
			k.Low = d
		case 3:
			k.Close = d
		}
	}
	*dst = k
	return nil
}

// PutResult says what PutREST did with a page.
type PutResult struct {
	Written int // rows inserted or replaced
	Kept    int // klines not stored: a row built from trades (or open) holds the key
}

// PutREST stores klines, REST klines of one series (market, symbol, iv), under
// the rules above, in one transaction: all of them or, on error, none. A kline
// that does not parse fails the page with ErrBadREST. Any goroutine; the
// database must be open for writing (Open).
func (d *DB) PutREST(ctx context.Context, market, symbol string, iv shard.Interval, klines []RESTKline) (PutResult, error) {
	var res PutResult
	if d.readOnly {
		return res, errors.New("cannot store REST klines: the database was opened read-only")
	}
	if len(klines) == 0 {
		return res, nil
	}
	rows := make([]dbRow, len(klines))
	var text []byte
	var k shard.Kline
	for i := range klines {
		if err := ParseRESTKline(&k, &klines[i], iv); err != nil {
			return res, fmt.Errorf("cannot store REST klines of %s %s: %w", symbol, iv.Name, err)
		}
		text = encodeRow(&rows[i], text, 0, &k)
	}
	conn, err := d.sql.Conn(ctx)
	if err != nil {
		return res, fmt.Errorf("cannot store REST klines of %s %s: %w", symbol, iv.Name, err)
	}
	defer conn.Close()
	// BEGIN IMMEDIATE takes the write lock first: a deferred transaction that
	// read before it wrote could fail with SQLITE_BUSY against the Writer.
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return res, fmt.Errorf("cannot store REST klines of %s %s: cannot begin transaction: %w", symbol, iv.Name, err)
	}
	bg := context.Background() // the transaction ends whatever ctx does
	committed := false
	defer func() {
		if !committed {
			_, _ = conn.ExecContext(bg, "ROLLBACK")
		}
	}()
	if _, err := conn.ExecContext(bg, "INSERT INTO series(market, symbol, interval) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", market, symbol, iv.Name); err != nil {
		return res, fmt.Errorf("cannot store REST klines of %s %s: cannot add series: %w", symbol, iv.Name, err)
	}
	var id int64
	if err := conn.QueryRowContext(bg, "SELECT id FROM series WHERE market = ? AND symbol = ? AND interval = ?", market, symbol, iv.Name).Scan(&id); err != nil {
		return res, fmt.Errorf("cannot store REST klines of %s %s: cannot read series: %w", symbol, iv.Name, err)
	}
	for i := range rows {
		rows[i][slotSeries] = id
	}
	var changed int64
	err = conn.Raw(func(dc any) error {
		rc, err := newRowConn(dc)
		if err != nil {
			return err
		}
		changed, err = rc.insert(restKlineSQL, rows, text)
		return errors.Join(err, rc.close())
	})
	if err != nil {
		return res, fmt.Errorf("cannot store REST klines of %s %s: %w", symbol, iv.Name, err)
	}
	if _, err := conn.ExecContext(bg, "COMMIT"); err != nil {
		return res, fmt.Errorf("cannot store REST klines of %s %s: cannot commit: %w", symbol, iv.Name, err)
	}
	committed = true
	res.Written = int(changed)
	res.Kept = len(klines) - res.Written
	return res, nil
}

// Coverage is what the database holds of one series, for the backfill.
type Coverage struct {
	Symbol, Interval string
	// Oldest is the oldest stored open time, any row; valid when Rows.
	Oldest int64
	Rows   bool
	// OldestTrades is the oldest open time of a row built from trades (without
	// FlagREST); valid when Trades.
	OldestTrades int64
	Trades       bool
}

// Coverage returns, for every series of market, its oldest stored open time and
// that of its oldest kline built from trades, sorted by symbol and interval
// name. Two index seeks per series. Any goroutine.
func (d *DB) Coverage(ctx context.Context, market string) ([]Coverage, error) {
	q := `SELECT s.symbol, s.interval,
		(SELECT open_time FROM klines INDEXED BY klines_series WHERE series = s.id ORDER BY open_time LIMIT 1),
		(SELECT open_time FROM klines INDEXED BY klines_series WHERE series = s.id AND flags & ` +
		strconv.Itoa(int(shard.FlagREST)) + ` = 0 ORDER BY open_time LIMIT 1)
		FROM series s WHERE s.market = ? ORDER BY s.symbol, s.interval`
	rows, err := d.sql.QueryContext(ctx, q, market)
	if err != nil {
		return nil, fmt.Errorf("cannot read the coverage of %s: %w", market, bulkError(err))
	}
	defer rows.Close()
	var out []Coverage
	for rows.Next() {
		var c Coverage
		var oldest, trades sql.NullInt64
		if err := rows.Scan(&c.Symbol, &c.Interval, &oldest, &trades); err != nil {
			return nil, fmt.Errorf("cannot read the coverage of %s: %w", market, err)
		}
		c.Oldest, c.Rows = oldest.Int64, oldest.Valid
		c.OldestTrades, c.Trades = trades.Int64, trades.Valid
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the coverage of %s: %w", market, bulkError(err))
	}
	return out, nil
}

// Newest returns the open time of every series' newest stored kline (any row),
// keyed by symbol and interval name joined by a NUL byte. The daemon reads it
// before it writes anything: what a restart finds stored. One index seek per
// series. Any goroutine.
func (d *DB) Newest(ctx context.Context, market string) (map[string]int64, error) {
	q := `SELECT s.symbol, s.interval,
		(SELECT open_time FROM klines INDEXED BY klines_series WHERE series = s.id ORDER BY open_time DESC LIMIT 1)
		FROM series s WHERE s.market = ?`
	rows, err := d.sql.QueryContext(ctx, q, market)
	if err != nil {
		return nil, fmt.Errorf("cannot read the newest klines of %s: %w", market, bulkError(err))
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var sym, iv string
		var newest sql.NullInt64
		if err := rows.Scan(&sym, &iv, &newest); err != nil {
			return nil, fmt.Errorf("cannot read the newest klines of %s: %w", market, err)
		}
		if newest.Valid {
			out[sym+"\x00"+iv] = newest.Int64
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the newest klines of %s: %w", market, bulkError(err))
	}
	return out, nil
}

// FirstTradesAfter returns the open time of the oldest kline of one series built
// from trades (without FlagREST) that opens after after, and whether there is
// one. Any goroutine.
func (d *DB) FirstTradesAfter(ctx context.Context, market, symbol, interval string, after int64) (int64, bool, error) {
	q := `SELECT k.open_time FROM series s JOIN klines k INDEXED BY klines_series ON k.series = s.id
		WHERE s.market = ? AND s.symbol = ? AND s.interval = ? AND k.open_time > ? AND k.flags & ` +
		strconv.Itoa(int(shard.FlagREST)) + ` = 0 ORDER BY k.open_time LIMIT 1`
	var open int64
	err := d.sql.QueryRowContext(ctx, q, market, symbol, interval, after).Scan(&open)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("cannot read the klines of %s %s %s: %w", market, symbol, interval, bulkError(err))
	}
	return open, true, nil
}
