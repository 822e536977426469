package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/klagg/klagg/shard"
)

// MaxLimit bounds Klines' limit.
const MaxLimit = 100_000

// Klines returns the stored klines of one series with open times in [start, end],
// oldest first, at most limit (1..MaxLimit) of them, with Binance's semantics for a
// missing bound (pass -1): with start, the oldest limit klines from start; with only
// end, the newest limit klines up to end; with neither, the newest limit. The open
// kline, when stored, is included with Closed false. The klines' Symbol and Interval
// fields are zero: the arguments name them. An unknown series has no klines.
// Any goroutine.
func (d *DB) Klines(ctx context.Context, market, symbol, interval string, start, end int64, limit int) ([]shard.Kline, error) {
	if limit < 1 || limit > MaxLimit {
		return nil, fmt.Errorf("cannot read klines: limit %d out of 1..%d", limit, MaxLimit)
	}
	var id int64
	err := d.sql.QueryRowContext(ctx, "SELECT id FROM series WHERE market = ? AND symbol = ? AND interval = ?", market, symbol, interval).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read series %s %s %s: %w", market, symbol, interval, err)
	}
	if end < 0 {
		end = math.MaxInt64
	}
	q := "SELECT " + rowColumns + " FROM klines INDEXED BY klines_series WHERE series = ?1 AND open_time >= ?2 AND open_time <= ?3 ORDER BY open_time"
	newest := start < 0
	if newest {
		start = math.MinInt64
		q += " DESC"
	}
	out := make([]shard.Kline, 0, min(limit, 4096))
	err = scanRows(ctx, d.sql, q+" LIMIT ?4", []int64{id, start, end, int64(limit)}, func(rows []dbRow, text []byte) error {
		for i := range rows {
			out = append(out, shard.Kline{})
			if err := decodeRow(&out[len(out)-1], &rows[i], text); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read klines of %s %s %s: %w", market, symbol, interval, bulkError(err))
	}
	if newest {
		slices.Reverse(out)
	}
	return out, nil
}

// Markets lists the markets with stored series.
func (d *DB) Markets(ctx context.Context) ([]string, error) {
	return d.strings(ctx, "SELECT DISTINCT market FROM series ORDER BY market")
}

// Symbols lists the symbols of market with stored series, sorted.
func (d *DB) Symbols(ctx context.Context, market string) ([]string, error) {
	return d.strings(ctx, "SELECT DISTINCT symbol FROM series WHERE market = ? ORDER BY symbol", market)
}

// Intervals lists the stored intervals of one symbol, shortest first.
func (d *DB) Intervals(ctx context.Context, market, symbol string) ([]string, error) {
	names, err := d.strings(ctx, "SELECT interval FROM series WHERE market = ? AND symbol = ?", market, symbol)
	if err != nil {
		return nil, err
	}
	sortIntervals(names)
	return names, nil
}

// sortIntervals orders interval names by length (months after fixed lengths), names
// that do not parse last.
func sortIntervals(names []string) {
	key := func(s string) (int, int64) {
		iv, err := shard.ParseInterval(s)
		switch {
		case err != nil:
			return 2, 0
		case iv.Months > 0:
			return 1, int64(iv.Months)
		}
		return 0, iv.Millis
	}
	slices.SortFunc(names, func(a, b string) int {
		ga, la := key(a)
		gb, lb := key(b)
		if ga != gb {
			return ga - gb
		}
		if la != lb {
			if la < lb {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
}

func (d *DB) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := d.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot list series: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("cannot list series: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot list series: %w", err)
	}
	return out, nil
}

// Series is one (symbol, interval) of a market as stored, for a restart.
type Series struct {
	Symbol, Interval string
	// Through is the largest last aggTrade id of any kline ever stored for the series
	// (kept in the series table, so retention does not lower it), -1 if none: every
	// stored kline of the series includes each of its trades up to Through and none
	// after. Resume the series by applying, to it alone, the trades with larger ids.
	Through int64
	// Klines holds every stored open kline (Closed false) and the closed klines with
	// open_time >= the closedSince given to LoadSeries, oldest first; their Symbol and
	// Interval fields are zero.
	Klines []shard.Kline
}

// LoadSeries returns every series of market with its Through and recent klines, for
// the daemon to resume from (see Series and the restart contract in the package
// documentation). Any goroutine; the writer need not be running.
func (d *DB) LoadSeries(ctx context.Context, market string, closedSince int64) ([]Series, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT id, symbol, interval, through FROM series WHERE market = ? ORDER BY symbol, id", market)
	if err != nil {
		return nil, fmt.Errorf("cannot load series: %w", err)
	}
	var out []Series
	byID := map[int64]int{}
	for rows.Next() {
		var id int64
		var s Series
		if err := rows.Scan(&id, &s.Symbol, &s.Interval, &s.Through); err != nil {
			rows.Close()
			return nil, fmt.Errorf("cannot load series: %w", err)
		}
		byID[id] = len(out)
		out = append(out, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot load series: %w", err)
	}
	// The open klines of every series, through the partial index; then each series'
	// recent closed ones, through the series index.
	q := "SELECT " + rowColumns + " FROM klines INDEXED BY klines_open WHERE closed = 0"
	if err := d.loadKlines(ctx, q, out, byID); err != nil {
		return nil, err
	}
	q = "SELECT " + rowColumns + " FROM klines INDEXED BY klines_series WHERE series = ?1 AND open_time >= ?2 AND closed = 1"
	for id := range byID {
		if err := d.loadKlines(ctx, q, out, byID, id, closedSince); err != nil {
			return nil, err
		}
	}
	for i := range out {
		slices.SortFunc(out[i].Klines, func(a, b shard.Kline) int { return cmp.Compare(a.OpenTime, b.OpenTime) })
	}
	return out, nil
}

func (d *DB) loadKlines(ctx context.Context, q string, out []Series, byID map[int64]int, args ...int64) error {
	err := scanRows(ctx, d.sql, q, args, func(rows []dbRow, text []byte) error {
		for i := range rows {
			j, ok := byID[rows[i][slotSeries]]
			if !ok {
				continue
			}
			var k shard.Kline
			if err := decodeRow(&k, &rows[i], text); err != nil {
				return err
			}
			out[j].Klines = append(out[j].Klines, k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cannot load klines: %w", bulkError(err))
	}
	return nil
}
