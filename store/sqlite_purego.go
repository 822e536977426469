//go:build !cgo || purego

package store

import (
	"context"
	"database/sql"
)

// The pure database/sql twin of sqlite_cgo.go: every row through the driver.

func newRowConn(dc any) (rowConn, error) { return newDriverRowConn(dc) }

func scanRows(ctx context.Context, db *sql.DB, q string, args []int64, f func(rows []dbRow, text []byte) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return scanRowsSQL(ctx, conn, q, args, f)
}
