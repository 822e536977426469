package store_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/store"
)

// dirState is what a hard case must leave as it was: every file's name and content.
func dirState(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	m := map[string][32]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = sha256.Sum256(b)
	}
	return m
}

func sameDir(t *testing.T, dir string, before map[string][32]byte) {
	t.Helper()
	after := dirState(t, dir)
	for name, sum := range before {
		if a, ok := after[name]; !ok || a != sum {
			t.Errorf("%s changed or vanished", name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s appeared", name)
		}
	}
}

// validDB writes a small klagg database at path and closes it.
func validDB(t *testing.T, path string, klines int) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Path = path
	ivs := testIntervals(t, "1m")
	h := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	for i := range int64(klines) {
		h.put(kl(ivs, 0, 0, t0+i*60_000, 10*i, 10*i+9, true))
	}
	h.close()
	os.Remove(path + ".lock")
}

// openBoth tries Open and OpenReadOnly on path; both must fail with want and leave
// the directory as it was.
func openBoth(t *testing.T, path string, want error) {
	t.Helper()
	dir := filepath.Dir(path)
	before := dirState(t, dir)
	cfg := testConfig(t)
	cfg.Path = path
	if db, err := store.Open(ctx, cfg); !errors.Is(err, want) {
		if db != nil {
			db.Close()
		}
		t.Errorf("Open: %v, want %v", err, want)
	} else {
		t.Logf("Open: %v", err)
	}
	if db, err := store.OpenReadOnly(ctx, cfg); !errors.Is(err, want) {
		if db != nil {
			db.Close()
		}
		t.Errorf("OpenReadOnly: %v, want %v", err, want)
	}
	sameDir(t, dir, before)
}

func TestStoreCorruptFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "klagg.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	openBoth(t, path, store.ErrCorrupt)
}

func TestStoreEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "klagg.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	openBoth(t, path, store.ErrCorrupt)
}

func TestStoreTruncatedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "klagg.db")
	validDB(t, path, 3000)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	half := st.Size() / 2 / 4096 * 4096 // whole pages: the header's page count tells
	for _, size := range []int64{half, half + 1000, 50} {
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		openBoth(t, path, store.ErrCorrupt)
	}
}

// TestStoreCorruptPage damages a page inside a database with a sound header: Open
// cannot see it, but reads fail with SQLite's error and the writer gives up with
// it instead of writing on.
func TestStoreCorruptPage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "klagg.db")
	validDB(t, path, 3000)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	for off := int64(4096); off < st.Size(); off += 4096 { // every page but the schema's
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	cfg := testConfig(t)
	cfg.Path = path
	ro, err := store.OpenReadOnly(ctx, cfg)
	if err != nil {
		t.Logf("OpenReadOnly: %v", err)
		return
	}
	defer ro.Close()
	_, err = ro.Klines(ctx, "futures", "BTCUSDT", "1m", -1, -1, 10)
	if err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("reading a corrupt database: %v, want SQLite's malformed error", err)
	}
	t.Log(err)
}

func TestStoreNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "klagg.db")
	validDB(t, path, 10)
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	openBoth(t, path, store.ErrNewerSchema)
}

func TestStoreNotKlagg(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	openBoth(t, path, store.ErrNotKlagg)
}

// TestStoreSecondWriter opens a database that a writer holds: a clear error, and
// nothing of the first writer's disturbed.
func TestStoreSecondWriter(t *testing.T) {
	ivs := testIntervals(t, "1m")
	cfg := testConfig(t)
	h := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	h.put(kl(ivs, 0, 0, t0, 1, 2, true))
	h.sync()
	_, err := store.Open(ctx, cfg)
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "locked by process") {
		t.Fatalf("second Open: %v, want ErrLocked naming the holder", err)
	}
	// Readers are welcome beside the writer.
	ro, err := store.OpenReadOnly(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if ks, err := ro.Klines(ctx, "futures", "BTCUSDT", "1m", -1, -1, 10); err != nil || len(ks) != 1 {
		t.Errorf("reader beside the writer: %d klines, %v", len(ks), err)
	}
	h.put(kl(ivs, 0, 0, t0+60_000, 3, 4, true))
	h.sync()
	h.close()
	// Released: the next writer gets in.
	h2 := openHarness(t, cfg, parse.NewSymbolTable("BTCUSDT"), ivs, nil)
	if ks := h2.klines("BTCUSDT", "1m", -1, -1, 10); len(ks) != 2 {
		t.Errorf("%d klines after reopening, want 2", len(ks))
	}
}

// readOnlyDir makes dir unwritable, even for root (the immutable attribute), and
// undoes it at cleanup.
func readOnlyDir(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags|fsImmutable)
	}
	if err != nil {
		t.Skipf("running as root and cannot make %s immutable (%v): a read-only directory cannot be made", dir, err)
	}
	t.Cleanup(func() {
		f, err := os.Open(dir)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags); err != nil {
			t.Errorf("cannot clear the immutable attribute of %s: %v", dir, err)
		}
	})
}

func TestStoreReadOnlyDir(t *testing.T) {
	// An existing database in a directory that became read-only.
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "klagg.db")
	validDB(t, path, 10)
	readOnlyDir(t, dir)
	before := dirState(t, dir)
	cfg := testConfig(t)
	cfg.Path = path
	if db, err := store.Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), "writable") {
		if db != nil {
			db.Close()
		}
		t.Errorf("Open in a read-only directory: %v", err)
	} else {
		t.Log(err)
	}
	sameDir(t, dir, before)

	// A new database in a read-only directory.
	cfg.Path = filepath.Join(dir, "new.db")
	if db, err := store.Open(ctx, cfg); err == nil {
		db.Close()
		t.Error("a database created in a read-only directory")
	}
	sameDir(t, dir, before)
	if entries, _ := os.ReadDir(dir); slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == "new.db" }) {
		t.Error("new.db created")
	}
}

// fsImmutable is FS_IMMUTABLE_FL from linux/fs.h (chattr +i).
const fsImmutable = 0x10

// TestMain lets the test binary play a second daemon (see TestStoreSecondProcess).
func TestMain(m *testing.M) {
	if path := os.Getenv("KLAGG_STORE_HOLD"); path != "" {
		cfg := store.DefaultConfig()
		cfg.Path = path
		db, err := store.Open(context.Background(), cfg)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready", os.Getpid())
		io.Copy(io.Discard, os.Stdin) // hold the database until stdin closes
		db.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestStoreSecondProcess runs a daemon in another process: Open fails naming its
// pid, the file is left as it was, and when that process is killed (a crash) the
// lock goes with it.
func TestStoreSecondProcess(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "klagg.db")
	validDB(t, path, 10)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KLAGG_STORE_HOLD="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the other process: %q, %v", line, err)
	}
	pid := strings.TrimSpace(strings.TrimPrefix(line, "ready "))
	before := dirState(t, dir)
	cfg := testConfig(t)
	cfg.Path = path
	_, err = store.Open(ctx, cfg)
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "process "+pid) {
		t.Errorf("Open beside another process: %v, want ErrLocked naming pid %s", err, pid)
	}
	sameDir(t, dir, before)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open after the other process died: %v", err)
	}
	db.Close()
}
