package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// Compaction: the daemon commits every second, so a series' klines land one per
// commit, each on a page of its own among the other series' (rows are appended in
// arrival order), and a read of 1500 of them touches 1500 pages. Once a window of
// event time (Config.Compact, 1 h) is over, the writer rewrites its closed klines
// in (series, open_time) order at the end of the table, in one transaction: an
// hour of a 1m series becomes 60 neighbouring rows, a page or two. The rows are
// the same, so the restart contract and Through are untouched; a reader sees the
// window before or after. A window whose series' klines already came in long runs
// (a catch-up or a replay writes hours of klines per commit, sorted by key) is
// left as it is.

// compactRunRows is the average run (a series' klines of one window written by one
// commit, neighbours in the table) below which a window is rewritten: a read of
// 1500 klines then touches over 90 runs, where compaction leaves 25 for a 1m series
// and a 1 h window.
const compactRunRows = 16

// windowStats counts, for one window, the closed rows written and the runs they
// came in.
type windowStats struct{ rows, runs int }

// compactKey is the meta key holding, per market, the event time (Unix ms) up to
// which windows are compacted.
func compactKey(market string) string { return "compacted_until:" + market }

// noteWindows counts, for compaction, the rows and runs the commit of b wrote into
// each window (w.order holds b's closed klines sorted by key: a run is a series'
// klines of one window), and tracks the newest closed open time.
func (w *Writer) noteWindows(b batch) {
	if w.cfg.Compact <= 0 {
		return
	}
	win := w.cfg.Compact.Milliseconds()
	prevSeries, prevStart := int64(-1), int64(0)
	for _, e := range w.order {
		if b.closed[e.pos].Mark {
			continue
		}
		w.newestClosed = max(w.newestClosed, e.openTime)
		start := e.openTime - floorMod(e.openTime, win)
		if w.compactLoaded && start < w.compactedUntil {
			continue // a correction of a compacted window: updated in place
		}
		ws := w.windows[start]
		ws.rows++
		if e.series != prevSeries || start != prevStart {
			ws.runs++
			prevSeries, prevStart = e.series, start
		}
		w.windows[start] = ws
	}
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// compact rewrites at most one window that is over (the newest closed kline opened
// a quarter window after its end: its klines of intervals up to the window are
// closed; one still open is left where it is), on the writer goroutine between
// commits. It returns whether it did work (another window may be due).
func (w *Writer) compact() (bool, error) {
	if w.cfg.Compact <= 0 || w.bulk || w.newestClosed == noOpen {
		return false, nil
	}
	ctx := context.Background()
	win := w.cfg.Compact.Milliseconds()
	if !w.compactLoaded {
		var v string
		err := w.conn.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", compactKey(w.cfg.Market)).Scan(&v)
		switch {
		case errors.Is(err, sql.ErrNoRows): // from the window the writer starts in
			w.compactedUntil = w.newestClosed - floorMod(w.newestClosed, win)
		case err != nil:
			return false, fmt.Errorf("cannot read the compaction mark: %w", err)
		default:
			if w.compactedUntil, err = strconv.ParseInt(v, 10, 64); err != nil {
				return false, fmt.Errorf("cannot read the compaction mark %q: %w", v, err)
			}
		}
		w.compactLoaded = true
	}
	from, to := w.compactedUntil, w.compactedUntil+win
	if w.newestClosed < to+win/4 {
		return false, nil
	}
	// Skip the windows written in long runs (known only while this writer runs:
	// after a restart a window is rewritten).
	ws, known := w.windows[from]
	delete(w.windows, from)
	rewrite := !known || ws.rows < compactRunRows*ws.runs
	var moved int64
	err := inTx(ctx, w.conn, func() error {
		if rewrite {
			var err error
			if moved, err = compactWindow(ctx, w.conn, w.cfg.Market, from, to); err != nil {
				return err
			}
		}
		_, err := w.conn.ExecContext(ctx, "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", compactKey(w.cfg.Market), strconv.FormatInt(to, 10))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("cannot compact klines opened in [%d, %d): %w", from, to, err)
	}
	w.compactedUntil = to
	w.c.compacted.Add(uint64(moved))
	return true, nil
}

// compactWindow moves market's closed klines opened in [from, to) to the end of the
// table in (series, open_time) order, inside the caller's transaction, and returns
// how many it moved.
func compactWindow(ctx context.Context, conn *sql.Conn, market string, from, to int64) (int64, error) {
	stmts := []string{
		"CREATE TEMP TABLE IF NOT EXISTS compact_rows(rid INTEGER, " + klinesColumnsV2 + ")",
		"DELETE FROM temp.compact_rows",
	}
	for _, q := range stmts {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return 0, err
		}
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO temp.compact_rows(rid, `+rowColumns+`)
		SELECT k.rowid, k.series, k.open_time, k.close_time, k.open, k.high, k.low, k.close, k.volume, k.quote_volume,
			k.taker_buy_volume, k.taker_buy_quote_volume, k.count, k.first_trade_id, k.last_trade_id, k.first_agg_id, k.last_agg_id, k.closed, k.flags
		FROM series s JOIN klines k INDEXED BY klines_series ON k.series = s.id AND k.open_time >= ?2 AND k.open_time < ?3
		WHERE s.market = ?1 AND k.closed = 1`, market, from, to); err != nil {
		return 0, err
	}
	res, err := conn.ExecContext(ctx, "DELETE FROM klines WHERE rowid IN (SELECT rid FROM temp.compact_rows)")
	if err != nil {
		return 0, err
	}
	moved, _ := res.RowsAffected()
	if _, err := conn.ExecContext(ctx, "INSERT INTO klines("+rowColumns+") SELECT "+rowColumns+" FROM temp.compact_rows ORDER BY series, open_time"); err != nil {
		return 0, err
	}
	_, err = conn.ExecContext(ctx, "DELETE FROM temp.compact_rows")
	return moved, err
}
