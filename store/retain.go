package store

import (
	"context"
	"database/sql"
	"fmt"
)

// retentionSQL deletes at most ?3 closed klines of series ?1 opened before ?2: the
// subquery finds the open time of the (?3+1)-th oldest row, so one statement stays
// small whatever the backlog. Open klines are never deleted.
const retentionSQL = `DELETE FROM klines WHERE series = ?1 AND closed = 1 AND open_time < ?2
	AND open_time < coalesce((SELECT open_time FROM klines INDEXED BY klines_series WHERE series = ?1 ORDER BY open_time LIMIT 1 OFFSET ?3), ?2)`

// retain deletes, in one transaction of at most Config.RetentionBatch rows, klines
// past their interval's retention, counted back from the newest open time stored. It
// runs on the writer goroutine between commits; w.behind says whether rows remain.
func (w *Writer) retain() error {
	ctx := context.Background()
	var newest sql.NullInt64
	// Each series' newest through the series index: the table is in arrival order.
	if err := w.conn.QueryRowContext(ctx, `SELECT max((SELECT max(open_time) FROM klines WHERE series = s.id)) FROM series s`).Scan(&newest); err != nil {
		return fmt.Errorf("cannot read the newest kline: %w", err)
	}
	w.behind = false
	if !newest.Valid {
		return nil
	}
	type target struct{ id, cutoff int64 }
	var targets []target
	rows, err := w.conn.QueryContext(ctx, "SELECT id, interval FROM series WHERE market = ? ORDER BY id", w.cfg.Market)
	if err != nil {
		return fmt.Errorf("cannot list series: %w", err)
	}
	for rows.Next() {
		var id int64
		var iv string
		if err := rows.Scan(&id, &iv); err != nil {
			rows.Close()
			return fmt.Errorf("cannot list series: %w", err)
		}
		if d := w.cfg.Retention[iv]; d > 0 {
			targets = append(targets, target{id, newest.Int64 - d.Milliseconds()})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot list series: %w", err)
	}
	if len(targets) == 0 {
		return nil
	}
	budget := int64(w.cfg.RetentionBatch)
	var deleted int64
	err = inTx(ctx, w.conn, func() error {
		for i := range targets {
			pos := (w.retainPos + i) % len(targets)
			t := targets[pos]
			res, err := w.conn.ExecContext(ctx, retentionSQL, t.id, t.cutoff, budget)
			if err != nil {
				return fmt.Errorf("cannot delete klines past retention: %w", err)
			}
			n, _ := res.RowsAffected()
			deleted += n
			if budget -= n; budget <= 0 {
				w.retainPos = pos
				w.behind = true
				return nil
			}
		}
		return nil
	})
	if err != nil {
		w.behind = false
		return err
	}
	w.c.deleted.Add(uint64(deleted))
	return nil
}
