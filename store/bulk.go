package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/shard"
)

// ErrBulkLoad: a read of a database a bulk load (Config.Bulk) is writing, or left
// unfinished; the writer's next Open finishes it.
var ErrBulkLoad = errors.New("database is being bulk loaded; its key index is rebuilt when the load finishes")

// bulkMeta is the meta key that marks a bulk load in progress: the key index is
// dropped, the table may hold a key twice (the newest row counts), and the marks
// table may hold flags to apply.
const bulkMeta = "bulk_load"

// enterBulk starts a bulk load: it marks it in meta and drops the key index, in one
// transaction. Appending then costs SQLite a table append per row, without the
// index seek and the index pages written at every commit; finishBulk builds the
// index once, sorted.
func (w *Writer) enterBulk(ctx context.Context) error {
	var rows bool
	if err := w.conn.QueryRowContext(ctx, "SELECT EXISTS(SELECT 1 FROM klines)").Scan(&rows); err != nil {
		return fmt.Errorf("cannot start bulk load: %w", err)
	}
	err := inTx(ctx, w.conn, func() error {
		if _, err := w.conn.ExecContext(ctx, "INSERT OR REPLACE INTO meta(key, value) VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))", bulkMeta); err != nil {
			return err
		}
		_, err := w.conn.ExecContext(ctx, "DROP INDEX IF EXISTS klines_series")
		return err
	})
	if err != nil {
		return fmt.Errorf("cannot start bulk load: %w", err)
	}
	w.bulk = true
	w.bulkDups = rows // a replay over stored klines may write their keys again
	w.pendingOpen = map[[2]int64]shard.Kline{}
	return nil
}

// finishBulk ends the bulk load on the writer goroutine at Close: the key index
// (deduplicating first when keys may repeat: the table had rows, or a correction
// came), the marks, then the open states held back, as a normal commit.
func (w *Writer) finishBulk() error {
	start := time.Now()
	w.mu.Lock()
	dedupe := w.bulkDups || w.rewritten
	w.mu.Unlock()
	marks, missing, err := finishBulk(context.Background(), w.conn, dedupe)
	if err != nil {
		return err
	}
	w.c.marks.Add(marks)
	w.c.marksMissing.Add(missing)
	w.bulk = false
	w.log.Info("store: bulk load finished", zap.String("db", w.cfg.Path), zap.Duration("index", time.Since(start)),
		zap.Uint64("rows", w.c.rows.Load()), zap.Int("open", len(w.pendingOpen)))
	if len(w.pendingOpen) == 0 {
		return nil
	}
	var b batch
	for _, k := range w.pendingOpen {
		b.open = append(b.open, k)
	}
	w.pendingOpen = nil
	return w.commitRetrying(b)
}

// dedupeSQL keeps, of the rows sharing a key, the newest (the largest rowid: rows
// are appended in arrival order, so it is the last state written, as an upsert
// would have left it).
const dedupeSQL = `DELETE FROM klines WHERE rowid IN (
	SELECT rowid FROM (SELECT rowid, max(rowid) OVER (PARTITION BY series, open_time) AS newest FROM klines)
	WHERE rowid <> newest)`

// finishBulk finishes a bulk load on conn in one transaction: deduplicates when
// dedupe (or when the index finds a key twice), builds the key index, ORs the
// waiting marks into their klines and clears the bulk mark. It returns the marks
// applied and those whose kline is not stored.
func finishBulk(ctx context.Context, conn *sql.Conn, dedupe bool) (marks, missing uint64, err error) {
	err = inTx(ctx, conn, func() error {
		if dedupe {
			if _, err := conn.ExecContext(ctx, dedupeSQL); err != nil {
				return fmt.Errorf("cannot remove replaced klines: %w", err)
			}
		}
		const index = "CREATE UNIQUE INDEX klines_series ON klines(series, open_time)"
		_, err := conn.ExecContext(ctx, index)
		if err != nil && !dedupe && strings.Contains(err.Error(), "UNIQUE") {
			if _, err := conn.ExecContext(ctx, dedupeSQL); err != nil {
				return fmt.Errorf("cannot remove replaced klines: %w", err)
			}
			_, err = conn.ExecContext(ctx, index)
		}
		if err != nil {
			return fmt.Errorf("cannot build the klines index: %w", err)
		}
		rows, err := conn.QueryContext(ctx, "SELECT series, open_time, flags FROM marks ORDER BY rowid")
		if err != nil {
			return fmt.Errorf("cannot read marks: %w", err)
		}
		type mark struct{ series, openTime, flags int64 }
		var ms []mark
		for rows.Next() {
			var m mark
			if err := rows.Scan(&m.series, &m.openTime, &m.flags); err != nil {
				rows.Close()
				return fmt.Errorf("cannot read marks: %w", err)
			}
			ms = append(ms, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("cannot read marks: %w", err)
		}
		for _, m := range ms {
			res, err := conn.ExecContext(ctx, markSQL, m.flags, m.openTime, m.series)
			if err != nil {
				return fmt.Errorf("cannot mark kline: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				missing++
			} else {
				marks++
			}
		}
		if _, err := conn.ExecContext(ctx, "DELETE FROM marks"); err != nil {
			return fmt.Errorf("cannot clear marks: %w", err)
		}
		_, err = conn.ExecContext(ctx, "DELETE FROM meta WHERE key = ?", bulkMeta)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("cannot finish bulk load: %w", err)
	}
	return marks, missing, nil
}

// bulkError turns the error of a read that needs the key index into ErrBulkLoad
// when a bulk load dropped it.
func bulkError(err error) error {
	if err != nil && strings.Contains(err.Error(), "no such index: klines_series") {
		return fmt.Errorf("%w (%v)", ErrBulkLoad, err)
	}
	return err
}
