package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DB is an open klagg database: read methods for any goroutine, and, when opened
// with Open, the right to run one Writer.
type DB struct {
	cfg      Config
	sql      *sql.DB
	lock     *lockFile // nil when read-only
	readOnly bool
	writer   bool // a Writer was made
}

// Open opens the database at cfg.Path for writing, creating it (and its directory)
// when it does not exist, and migrates its schema. It fails, without changing the
// file, when the file is not a whole SQLite database (ErrCorrupt), not klagg's
// (ErrNotKlagg), from a newer klagg (ErrNewerSchema), or written by another process
// (ErrLocked); and when the directory is not writable. It never recreates a file
// that exists.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	cfg = cfg.withDefaults()
	_, err := readHeader(cfg.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil { // a new database
		if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
			return nil, fmt.Errorf("cannot create database directory: %w", err)
		}
	}
	l, err := lock(cfg.Path)
	if err != nil {
		return nil, err
	}
	// Under the lock, again: another writer may have created or changed the file
	// before it let go.
	if _, err := readHeader(cfg.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		l.unlock()
		return nil, err
	}
	db, err := openSQL(cfg, false)
	if err != nil {
		l.unlock()
		return nil, err
	}
	d := &DB{cfg: cfg, sql: db, lock: l}
	if err := d.prepare(ctx); err != nil {
		db.Close()
		l.unlock()
		return nil, err
	}
	return d, nil
}

// OpenReadOnly opens an existing database for reading (klagg export, klagg verify, an
// API server); it takes no lock and may run beside the daemon. cfg supplies Path,
// Driver and BusyTimeout.
func OpenReadOnly(ctx context.Context, cfg Config) (*DB, error) {
	cfg = cfg.withDefaults()
	_, err := readHeader(cfg.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cannot open database %s: %w", cfg.Path, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	db, err := openSQL(cfg, true)
	if err != nil {
		return nil, err
	}
	var ver int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&ver); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot read database %s: %w", cfg.Path, err)
	}
	switch {
	case ver > SchemaVersion:
		db.Close()
		return nil, fmt.Errorf("cannot open database %s: schema version %d, this klagg knows up to %d; upgrade klagg: %w", cfg.Path, ver, SchemaVersion, ErrNewerSchema)
	case ver < SchemaVersion:
		db.Close()
		return nil, fmt.Errorf("cannot open database %s: schema version %d, this klagg reads %d; run the daemon once to migrate it: %w", cfg.Path, ver, SchemaVersion, ErrOlderSchema)
	}
	return &DB{cfg: cfg, sql: db, readOnly: true}, nil
}

func openSQL(cfg Config, readOnly bool) (*sql.DB, error) {
	name, err := dsn(cfg, readOnly)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open(driverName(cfg), name)
	if err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", cfg.Path, err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(4)
	return db, nil
}

// prepare sets WAL mode and migrates the schema, on one connection.
func (d *DB) prepare(ctx context.Context) error {
	conn, err := d.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("cannot open database %s: %w", d.cfg.Path, err)
	}
	defer conn.Close()
	var appID, ver, tables int
	if err := conn.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return fmt.Errorf("cannot read database %s: %w", d.cfg.Path, err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&ver); err != nil {
		return fmt.Errorf("cannot read database %s: %w", d.cfg.Path, err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return fmt.Errorf("cannot read database %s: %w", d.cfg.Path, err)
	}
	if appID != applicationID && (appID != 0 || ver != 0 || tables != 0) {
		return fmt.Errorf("cannot open database %s: application id %#x: %w", d.cfg.Path, appID, ErrNotKlagg)
	}
	if ver > SchemaVersion {
		return fmt.Errorf("cannot open database %s: schema version %d, this klagg knows up to %d; upgrade klagg: %w", d.cfg.Path, ver, SchemaVersion, ErrNewerSchema)
	}
	if ver == 0 && tables == 0 { // a new database: before WAL mode and the first table
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA page_size = %d", d.cfg.PageSize)); err != nil {
			return fmt.Errorf("cannot set the page size of %s: %w", d.cfg.Path, err)
		}
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return fmt.Errorf("cannot set WAL mode on %s: %w", d.cfg.Path, err)
	}
	if mode != "wal" {
		return fmt.Errorf("cannot set WAL mode on %s: journal mode stays %q", d.cfg.Path, mode)
	}
	if err := migrate(ctx, conn); err != nil {
		return err
	}
	// A bulk load a crash interrupted: finish it before anything reads or writes.
	var bulk int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM meta WHERE key = ?", bulkMeta).Scan(&bulk); err != nil {
		return fmt.Errorf("cannot read database %s: %w", d.cfg.Path, err)
	}
	if bulk > 0 {
		if _, _, err := finishBulk(ctx, conn, true); err != nil {
			return fmt.Errorf("cannot open database %s: %w", d.cfg.Path, err)
		}
	}
	return nil
}

// Path returns the database file.
func (d *DB) Path() string { return d.cfg.Path }

// Close closes the database and releases the writer lock. Close a Writer first.
func (d *DB) Close() error {
	err := d.sql.Close()
	if d.lock != nil {
		err = errors.Join(err, d.lock.unlock())
	}
	if err != nil {
		return fmt.Errorf("cannot close database %s: %w", d.cfg.Path, err)
	}
	return nil
}
