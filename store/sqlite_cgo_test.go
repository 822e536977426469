//go:build cgo && !purego

package store

import (
	"context"
	"path/filepath"
	"testing"
)

// TestStoreRawHandle checks that the writer and the readers find the sqlite3 handle
// of mattn's connections (an unexported field read by name): if mattn changes it,
// this fails instead of the store silently taking the slower database/sql twin.
func TestStoreRawHandle(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "klagg.db")
	db, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.sql.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		rc, err := newRowConn(dc)
		if err != nil {
			return err
		}
		if _, ok := rc.(*cStmts); !ok {
			t.Errorf("the writer's rows go through %T, want the C path", rc)
		}
		if _, ok := handleOf(dc); !ok {
			t.Error("no sqlite3 handle in a mattn connection")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
