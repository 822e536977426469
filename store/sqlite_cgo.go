//go:build cgo && !purego

package store

// The C side of the writer and the readers: rows go to SQLite, and come back, a
// batch per cgo call instead of a cgo call per value (mattn's bind costs one per
// column, and boxes every integer). It calls the SQLite that github.com/mattn/go-sqlite3
// compiles into the binary, on the connection database/sql handed out, so the
// transaction, the pragmas and the locks stay those of that connection.
// sqlite_purego.go is the pure database/sql twin, for the purego tag, builds without
// cgo and other drivers.

/*
#include <stdint.h>
#include <string.h>

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
extern int sqlite3_prepare_v2(sqlite3*, const char*, int, sqlite3_stmt**, const char**);
extern int sqlite3_bind_int64(sqlite3_stmt*, int, int64_t);
extern int sqlite3_bind_text(sqlite3_stmt*, int, const char*, int, void(*)(void*));
extern int sqlite3_step(sqlite3_stmt*);
extern int sqlite3_reset(sqlite3_stmt*);
extern int sqlite3_clear_bindings(sqlite3_stmt*);
extern int sqlite3_finalize(sqlite3_stmt*);
extern int sqlite3_changes(sqlite3*);
extern sqlite3* sqlite3_db_handle(sqlite3_stmt*);
extern const char* sqlite3_errmsg(sqlite3*);
extern int sqlite3_column_count(sqlite3_stmt*);
extern int sqlite3_column_type(sqlite3_stmt*, int);
extern int64_t sqlite3_column_int64(sqlite3_stmt*, int);
extern const unsigned char* sqlite3_column_text(sqlite3_stmt*, int);
extern int sqlite3_column_bytes(sqlite3_stmt*, int);

#define KLAGG_ROW 100
#define KLAGG_DONE 101
#define KLAGG_INTEGER 1
#define KLAGG_TEXT 3

// Keep in step with row.go.
#define SLOTS 19
#define PARAMS 18
#define DEC0 3
#define NDEC 8
#define TEXTMASK 18
#define MAXTEXT 48

// klagg_insert binds rows[0..n) (SLOTS int64 each, text references into text) to st
// and runs it once per row. It returns 0, or SQLite's error code with *failed set to
// the row. *changes adds up the rows each run changed.
static int klagg_insert(sqlite3_stmt* st, const int64_t* rows, int n, const char* text, int64_t* changes, int* failed) {
	sqlite3* db = sqlite3_db_handle(st);
	for (int r = 0; r < n; r++) {
		const int64_t* row = rows + (size_t)r * SLOTS;
		int64_t mask = row[TEXTMASK];
		for (int c = 0; c < PARAMS; c++) {
			int rc;
			if (c >= DEC0 && c < DEC0 + NDEC && ((mask >> (c - DEC0)) & 1)) {
				int64_t ref = row[c];
				// SQLITE_STATIC (0): text lives until the reset below.
				rc = sqlite3_bind_text(st, c + 1, text + (ref >> 32), (int)(ref & 0xffffffff), 0);
			} else {
				rc = sqlite3_bind_int64(st, c + 1, row[c]);
			}
			if (rc) {
				*failed = r;
				sqlite3_clear_bindings(st);
				return rc;
			}
		}
		int rc = sqlite3_step(st);
		if (rc != KLAGG_DONE) {
			*failed = r;
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			return rc;
		}
		*changes += sqlite3_changes(db);
		sqlite3_reset(st);
	}
	sqlite3_clear_bindings(st);
	return 0;
}

// klagg_exec binds n integers to st, runs it to its end and returns 0 or SQLite's
// error code; *changes gets the rows it changed.
static int klagg_exec(sqlite3_stmt* st, const int64_t* args, int n, int64_t* changes) {
	for (int i = 0; i < n; i++) {
		int rc = sqlite3_bind_int64(st, i + 1, args[i]);
		if (rc) {
			return rc;
		}
	}
	int rc;
	while ((rc = sqlite3_step(st)) == KLAGG_ROW) {
	}
	if (rc != KLAGG_DONE) {
		sqlite3_reset(st);
		return rc;
	}
	*changes = sqlite3_changes(sqlite3_db_handle(st));
	sqlite3_reset(st);
	return 0;
}

// klagg_read copies result rows of st (PARAMS columns in row.go's slot order) into
// rows, at most max, and the text of text decimals into text (cap bytes, *used on
// entry and exit). *pending says a row was stepped to but not copied (text full); it
// is copied first on the next call. It returns the rows copied, or -1 with *rc set:
// SQLite's error code, or -2 when column *col holds a value of the wrong type or a
// text too long for a decimal. *done is set at the end of the rows.
static int klagg_read(sqlite3_stmt* st, int64_t* rows, int max, char* text, int cap, int* used,
                      int* pending, int* done, int* rc, int* col) {
	int n = 0;
	*done = 0;
	while (n < max) {
		if (!*pending) {
			int s = sqlite3_step(st);
			if (s == KLAGG_DONE) {
				*done = 1;
				return n;
			}
			if (s != KLAGG_ROW) {
				*rc = s;
				return -1;
			}
			*pending = 1;
		}
		if (sqlite3_column_count(st) != PARAMS) {
			*rc = -2;
			*col = -1;
			return -1;
		}
		if (*used + NDEC * MAXTEXT > cap) {
			return n;
		}
		int64_t* row = rows + (size_t)n * SLOTS;
		int64_t mask = 0;
		for (int c = 0; c < PARAMS; c++) {
			int t = sqlite3_column_type(st, c);
			if (t == KLAGG_INTEGER) {
				row[c] = sqlite3_column_int64(st, c);
				continue;
			}
			if (t != KLAGG_TEXT || c < DEC0 || c >= DEC0 + NDEC) {
				*rc = -2;
				*col = c;
				return -1;
			}
			const unsigned char* s = sqlite3_column_text(st, c);
			int len = sqlite3_column_bytes(st, c);
			if (s == 0 || len > MAXTEXT) {
				*rc = -2;
				*col = c;
				return -1;
			}
			memcpy(text + *used, s, len);
			row[c] = ((int64_t)*used << 32) | len;
			*used += len;
			mask |= (int64_t)1 << (c - DEC0);
		}
		row[TEXTMASK] = mask;
		*pending = 0;
		n++;
	}
	return n;
}
*/
import "C"

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// Compile-time checks that row.go's layout is the one the C code assumes.
var _ = [1]struct{}{}[rowSlots-C.SLOTS]
var _ = [1]struct{}{}[rowParams-C.PARAMS]
var _ = [1]struct{}{}[slotOpen-C.DEC0]
var _ = [1]struct{}{}[numDecimals-C.NDEC]
var _ = [1]struct{}{}[slotText-C.TEXTMASK]
var _ = [1]struct{}{}[maxDecimalText-C.MAXTEXT]

// handleOf returns the sqlite3* of a mattn connection. mattn keeps it unexported
// (field db); reading it by name fails loudly, rather than wrongly, if that changes
// (TestStoreRawHandle).
func handleOf(dc any) (*C.sqlite3, bool) {
	c, ok := dc.(*sqlite3.SQLiteConn)
	if !ok || c == nil {
		return nil, false
	}
	f := reflect.ValueOf(c).Elem().FieldByName("db")
	if !f.IsValid() || f.Kind() != reflect.Pointer || f.IsNil() {
		return nil, false
	}
	return (*C.sqlite3)(f.UnsafePointer()), true
}

// cStmts is the writer's rowConn on the mattn driver: statements prepared once on the
// writer's connection, run through the C functions above.
type cStmts struct {
	db    *C.sqlite3
	stmts map[string]*C.sqlite3_stmt
}

// newRowConn returns the fastest rowConn for the driver connection dc: the C one on
// mattn's driver, the database/sql one otherwise.
func newRowConn(dc any) (rowConn, error) {
	if h, ok := handleOf(dc); ok {
		return &cStmts{db: h, stmts: map[string]*C.sqlite3_stmt{}}, nil
	}
	return newDriverRowConn(dc)
}

func (s *cStmts) errorf(rc C.int) error {
	return fmt.Errorf("%s (code %d)", C.GoString(C.sqlite3_errmsg(s.db)), int(rc))
}

func (s *cStmts) prepare(q string) (*C.sqlite3_stmt, error) {
	if st := s.stmts[q]; st != nil {
		return st, nil
	}
	cq := append([]byte(q), 0)
	var st *C.sqlite3_stmt
	if rc := C.sqlite3_prepare_v2(s.db, (*C.char)(unsafe.Pointer(&cq[0])), C.int(len(q)), &st, nil); rc != 0 {
		return nil, fmt.Errorf("cannot prepare statement: %w", s.errorf(rc))
	}
	s.stmts[q] = st
	return st, nil
}

func (s *cStmts) insert(q string, rows []dbRow, text []byte) (int64, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	st, err := s.prepare(q)
	if err != nil {
		return 0, err
	}
	var tp *C.char
	if len(text) > 0 {
		tp = (*C.char)(unsafe.Pointer(&text[0]))
	}
	var changes C.int64_t
	var failed C.int
	if rc := C.klagg_insert(st, (*C.int64_t)(unsafe.Pointer(&rows[0])), C.int(len(rows)), tp, &changes, &failed); rc != 0 {
		return int64(changes), s.errorf(rc)
	}
	return int64(changes), nil
}

func (s *cStmts) exec(q string, args ...int64) (int64, error) {
	st, err := s.prepare(q)
	if err != nil {
		return 0, err
	}
	var ap *C.int64_t
	if len(args) > 0 {
		ap = (*C.int64_t)(unsafe.Pointer(&args[0]))
	}
	var changes C.int64_t
	if rc := C.klagg_exec(st, ap, C.int(len(args)), &changes); rc != 0 {
		return 0, s.errorf(rc)
	}
	return int64(changes), nil
}

func (s *cStmts) close() error {
	var err error
	for q, st := range s.stmts {
		if rc := C.sqlite3_finalize(st); rc != 0 && err == nil {
			err = s.errorf(rc)
		}
		delete(s.stmts, q)
	}
	return err
}

// readChunk is how many rows one cgo call of a read copies.
const readChunk = 256

// scanBuf is what one read copies rows into, reused across reads.
type scanBuf struct {
	rows [readChunk]dbRow
	text [16 << 10]byte
}

var scanBufs = sync.Pool{New: func() any { return new(scanBuf) }}

// scanRows runs the query q (selecting rowColumns, with integer arguments args) on
// a connection of db and hands f the rows in chunks; the rows and their text are
// valid only during the call.
func scanRows(ctx context.Context, db *sql.DB, q string, args []int64, f func(rows []dbRow, text []byte) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	fast := false
	err = conn.Raw(func(dc any) error {
		h, ok := handleOf(dc)
		if !ok {
			return nil
		}
		fast = true
		return cScan(ctx, h, q, args, f)
	})
	if err != nil || fast {
		return err
	}
	return scanRowsSQL(ctx, conn, q, args, f)
}

// cScan runs q on h; a cancelled ctx stops it between two chunks of rows.
func cScan(ctx context.Context, h *C.sqlite3, q string, args []int64, f func(rows []dbRow, text []byte) error) error {
	s := &cStmts{db: h, stmts: map[string]*C.sqlite3_stmt{}}
	st, err := s.prepare(q)
	if err != nil {
		return err
	}
	defer s.close()
	for i, a := range args {
		if rc := C.sqlite3_bind_int64(st, C.int(i+1), C.int64_t(a)); rc != 0 {
			return s.errorf(rc)
		}
	}
	buf := scanBufs.Get().(*scanBuf)
	defer scanBufs.Put(buf)
	rows, text := buf.rows[:], buf.text[:]
	var pending, done C.int
	for done == 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		var used, rc, col C.int
		n := C.klagg_read(st, (*C.int64_t)(unsafe.Pointer(&rows[0])), C.int(len(rows)),
			(*C.char)(unsafe.Pointer(&text[0])), C.int(len(text)), &used, &pending, &done, &rc, &col)
		if n < 0 {
			if rc == -2 {
				return fmt.Errorf("cannot decode kline row: column %d is neither an integer nor a decimal text: %w", int(col), errDecimal)
			}
			return s.errorf(rc)
		}
		if n > 0 {
			if err := f(rows[:n], text[:used]); err != nil {
				return err
			}
		}
	}
	return nil
}
