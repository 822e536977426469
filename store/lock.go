package store

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockFile is an exclusive flock(2) on DB.lock beside the database: one writer per
// database. The kernel drops it when the process dies, so a crash leaves no stale
// lock (the file itself may stay; only the lock counts). SQLite's own locks do not
// do this job: they last a transaction, and locking_mode=EXCLUSIVE would also shut
// out readers (the sqlite3 shell, klagg export) for the daemon's whole life.
type lockFile struct {
	f    *os.File
	path string
}

func lock(dbPath string) (*lockFile, error) {
	path := dbPath + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot create lock file %s (is the directory writable?): %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("cannot open database %s: locked by process %s (lock file %s): %w", dbPath, strings.TrimSpace(string(b[:n])), path, ErrLocked)
		}
		return nil, fmt.Errorf("cannot lock %s: %w", path, err)
	}
	// The pid only serves the message above; a failure to write it is harmless.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &lockFile{f: f, path: path}, nil
}

// unlock releases the lock. The file stays: removing it would race with a process
// that opened it and waits to lock it.
func (l *lockFile) unlock() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}
