package store

import (
	"context"
	"path/filepath"
	"testing"
)

// TestStoreFinishBulkFallback finishes a bulk load told that no key repeats while
// one does: the index build fails on the duplicate, the rows are deduplicated (the
// newest wins) and the index is built.
func TestStoreFinishBulkFallback(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "klagg.db")
	db, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{
		"DROP INDEX klines_series",
		"INSERT INTO meta(key, value) VALUES ('" + bulkMeta + "', 'test')",
		"INSERT INTO klines(" + rowColumns + ") VALUES (1, 60000, 119999, 1, 1, 1, 1, 0, 0, 0, 0, 0, -1, -1, -1, -1, 1, 1)",
		"INSERT INTO klines(" + rowColumns + ") VALUES (1, 60000, 119999, 2, 2, 2, 2, 5, 5, 5, 5, 3, 7, 9, 1, 3, 1, 2)",
		"INSERT INTO klines(" + rowColumns + ") VALUES (1, 120000, 179999, 3, 3, 3, 3, 0, 0, 0, 0, 0, -1, -1, -1, -1, 1, 1)",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, _, err := finishBulk(ctx, conn, false); err != nil {
		t.Fatal(err)
	}
	var n, open, count int64
	if err := conn.QueryRowContext(ctx, "SELECT count(*), sum(open), sum(count) FROM klines").Scan(&n, &open, &count); err != nil {
		t.Fatal(err)
	}
	if n != 2 || open != 5 || count != 3 {
		t.Errorf("after the fallback: %d rows, opens sum %d, counts sum %d; want 2, 5, 3", n, open, count)
	}
	var idx, bulk int
	conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name = 'klines_series'").Scan(&idx)
	conn.QueryRowContext(ctx, "SELECT count(*) FROM meta WHERE key = ?", bulkMeta).Scan(&bulk)
	if idx != 1 || bulk != 0 {
		t.Errorf("index %d, bulk mark %d; want 1, 0", idx, bulk)
	}
}
