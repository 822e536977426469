package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// ErrClosed is returned by Kline after Close.
var ErrClosed = errors.New("store writer is closed")

// noOpen marks a series without an open kline in the database.
const noOpen = math.MinInt64

// Writer stores kline events in the database. It implements the pipeline's Sink
// (Kline, Close) and is called on the sink goroutine; Counters may be called from any
// goroutine.
//
// Kline never waits on the disk in steady state: it queues closed klines, marks and
// the newest state of each open kline (coalesced, latest wins) in memory, and a
// writer goroutine commits them in batched transactions every Config.CommitEvery, or
// sooner when Config.BatchRows closed klines wait. Closed klines are never dropped:
// when Config.MaxQueue of them wait, Kline blocks (backpressure, counted and logged).
// A failing commit is logged at once and retried with backoff; when it keeps failing
// for Config.FailAfter, Kline and Close return the error.
//
// Restart contract (see LoadSeries): for each series, the stored rows are the
// state of that series' klines after some prefix of its trades, and Series.Through
// names that prefix. The aggregator hands over a symbol's changed open klines
// oldest period first, all at once (shard.Aggregator.FlushUpdates), so every open
// period's newest state is stored, older ones (still in their grace time, or held
// while missing trades are fetched) beside the newest, each until its closed state
// replaces it; an update of a period already closed is dropped (its closed state
// is stored). Every row is written whole, so its fields and its last aggTrade id
// always come from the same kline state.
type Writer struct {
	db        *DB
	cfg       Config
	log       *zap.Logger
	symbols   *parse.SymbolTable
	intervals []shard.Interval
	conn      *sql.Conn

	mu      sync.Mutex
	notFull *sync.Cond
	queue   []shard.Kline // closed klines and marks, in arrival order
	series  []seriesState // by symbol*len(intervals)+interval
	latest  []shard.Kline // by series index: the newest open period's newest state
	older   []shard.Kline // open states of periods older than their series' newest, in arrival order
	dirty   []int32       // series with an open state not yet taken
	stored  map[string]int64
	oldest  time.Time // arrival of the oldest event not yet taken
	err     error     // fatal: the writer gave up
	closed  bool
	lastBP  time.Time // last backpressure log
	// rewritten: a closed kline came again (a correction); a bulk load then
	// deduplicates before it builds the key index.
	rewritten bool

	kick  chan struct{}
	syncs chan chan error
	done  chan struct{}

	// Owned by the writer goroutine.
	spare     []shard.Kline
	open      []shard.Kline
	ids       []int64 // series ids by series index; 0 unknown
	through   []int64 // stored Through by series index
	newIDs    []int32 // ids resolved in the current transaction
	rc        rowConn // statements on conn; used inside conn.Raw only
	rows      []dbRow // encoded rows of the statement run being built
	text      []byte  // the text their decimals refer to
	order     []eventKey
	raised    map[int]int64
	retainAt  time.Time
	retainPos int // round-robin position in the series retention walks
	behind    bool
	// Bulk mode (Config.Bulk): the key index is dropped while the writer runs;
	// open states wait in pendingOpen (by series index and open time) for Close.
	bulk        bool
	bulkDups    bool // the table may hold a key twice: dedupe before the index
	pendingOpen map[[2]int64]shard.Kline
	// Compaction (compact.go).
	newestClosed   int64                 // newest open time of a committed closed kline; noOpen none
	windows        map[int64]windowStats // by window start
	compactedUntil int64                 // windows before it are compacted
	compactLoaded  bool                  // compactedUntil read from meta
	compactAt      time.Time             // last compaction attempt

	inflight atomic.Int64 // arrival (UnixNano) of the oldest event being committed; 0 none
	c        counters
}

// seriesState is what the sink side knows of one (symbol, interval); its newest
// open kline state lives in Writer.latest, so that a closed kline touches 24
// bytes of it.
type seriesState struct {
	init       bool
	listed     bool  // in Writer.dirty
	dirty      bool  // Writer.latest not yet taken
	openTime   int64 // open time of the series' newest open kline in the database (or queued); noOpen if none
	lastClosed int64 // newest closed open time seen; noOpen if none
}

type counters struct {
	rows, openRows, marks, marksMissing, batches, bytes atomic.Uint64
	backpressure, writeErrors, deleted, compacted       atomic.Uint64
	olderOpen, staleUpdates, orphans                    atomic.Uint64
}

// Counters is a snapshot of a Writer's counters, for metrics.
type Counters struct {
	Rows              uint64        // closed kline rows committed (corrections included)
	OpenRows          uint64        // open kline states committed (after coalescing)
	Marks             uint64        // flag marks applied to stored klines
	MarksMissing      uint64        // marks for klines the database does not hold
	Batches           uint64        // transactions committed
	Bytes             uint64        // bytes of values written (decimal text, 8 per integer)
	BackpressureWaits uint64        // times Kline waited for room in the queue
	WriteErrors       uint64        // failed commit attempts
	Deleted           uint64        // rows deleted by retention
	Compacted         uint64        // rows rewritten in key order by compaction (Config.Compact)
	OlderOpen         uint64        // open updates of a period older than the series' newest open one (stored beside it)
	StaleUpdates      uint64        // open updates of a period already closed (skipped)
	OrphanOpen        uint64        // stored open klines a newer closed kline overtook
	Queued            int           // closed klines waiting
	Lag               time.Duration // age of the oldest event not yet committed
}

// NewWriter starts a writer on db (opened with Open) for cfg.Market. symbols maps
// Kline.Symbol to names and intervals Kline.Interval (the pipeline's
// shard.Config.Intervals). One Writer per DB.
func NewWriter(ctx context.Context, db *DB, symbols *parse.SymbolTable, intervals []shard.Interval, log *zap.Logger) (*Writer, error) {
	if db.readOnly {
		return nil, errors.New("cannot start store writer: the database was opened read-only")
	}
	if db.writer {
		return nil, errors.New("cannot start store writer: the database has one already")
	}
	if len(intervals) == 0 || len(intervals) > 256 {
		return nil, fmt.Errorf("cannot start store writer: %d intervals", len(intervals))
	}
	if log == nil {
		log = zap.NewNop()
	}
	cfg := db.cfg
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot start store writer: %w", err)
	}
	pragmas := []string{
		"PRAGMA synchronous = NORMAL",
		// Statement journals (an upsert keeps one) and compaction's temporary table
		// in memory: on disk a statement journal cost a write per page touched,
		// more than the rows themselves (perf).
		"PRAGMA temp_store = MEMORY",
		fmt.Sprintf("PRAGMA cache_size = %d", -cfg.CacheBytes>>10),
	}
	if cfg.MaxBytes > 0 {
		var page int64
		if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&page); err != nil {
			conn.Close()
			return nil, fmt.Errorf("cannot start store writer: %w", err)
		}
		pragmas = append(pragmas, fmt.Sprintf("PRAGMA max_page_count = %d", max(cfg.MaxBytes/page, 1)))
	}
	for _, p := range pragmas {
		if _, err := conn.ExecContext(ctx, p); err != nil {
			conn.Close()
			return nil, fmt.Errorf("cannot start store writer: %s: %w", p, err)
		}
	}
	stored, err := storedOpen(ctx, conn, cfg.Market)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var rc rowConn
	if err := conn.Raw(func(dc any) error {
		var err error
		rc, err = newRowConn(dc)
		return err
	}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("cannot start store writer: %w", err)
	}
	w := &Writer{
		db: db, cfg: cfg, log: log, symbols: symbols, intervals: intervals, conn: conn,
		stored: stored,
		kick:   make(chan struct{}, 1),
		syncs:  make(chan chan error),
		done:   make(chan struct{}),
		rc:     rc,
		raised: map[int]int64{},

		newestClosed: noOpen,
		windows:      map[int64]windowStats{},
	}
	if cfg.Bulk {
		if err := w.enterBulk(ctx); err != nil {
			w.closeConn()
			return nil, err
		}
	}
	db.writer = true
	w.notFull = sync.NewCond(&w.mu)
	go w.run()
	return w, nil
}

// closeConn finalizes the writer's statements and returns its connection.
func (w *Writer) closeConn() error {
	err := w.conn.Raw(func(any) error { return w.rc.close() })
	return errors.Join(err, w.conn.Close())
}

// storedOpen returns the open time of every open kline stored for market, keyed by
// symbol and interval name.
func storedOpen(ctx context.Context, conn *sql.Conn, market string) (map[string]int64, error) {
	rows, err := conn.QueryContext(ctx, `SELECT s.symbol, s.interval, k.open_time FROM klines k INDEXED BY klines_open
		JOIN series s ON s.id = k.series WHERE k.closed = 0 AND s.market = ?`, market)
	if err != nil {
		return nil, fmt.Errorf("cannot read open klines: %w", err)
	}
	defer rows.Close()
	m := map[string]int64{}
	for rows.Next() {
		var sym, iv string
		var open int64
		if err := rows.Scan(&sym, &iv, &open); err != nil {
			return nil, fmt.Errorf("cannot read open klines: %w", err)
		}
		if t, ok := m[sym+"\x00"+iv]; !ok || open < t {
			m[sym+"\x00"+iv] = open
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read open klines: %w", err)
	}
	return m, nil
}

// Kline queues one kline event (see Writer). k is copied. It returns an error only
// when the writer gave up (the database kept failing) or was closed, or when k does
// not belong to the writer's intervals: the daemon must stop then.
func (w *Writer) Kline(k *shard.Kline) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	if int(k.Interval) >= len(w.intervals) {
		return fmt.Errorf("cannot store kline: interval index %d, the writer has %d intervals", k.Interval, len(w.intervals))
	}
	idx := int(k.Symbol)*len(w.intervals) + int(k.Interval)
	if idx >= len(w.series) {
		w.growSeries(idx)
	}
	st := &w.series[idx]
	if !st.init {
		w.initSeries(st, k)
	}
	if !k.Closed && !k.Mark {
		w.update(st, int32(idx), k)
		return nil
	}
	for len(w.queue) >= w.cfg.MaxQueue && w.err == nil {
		w.c.backpressure.Add(1)
		if now := time.Now(); now.Sub(w.lastBP) > 10*time.Second {
			w.lastBP = now
			w.log.Warn("store: the queue of closed klines is full; the pipeline waits for the database",
				zap.String("db", w.cfg.Path), zap.Int("queued", len(w.queue)),
				zap.Uint64("waits", w.c.backpressure.Load()), zap.Duration("lag", w.lag(now)))
		}
		w.signal()
		w.notFull.Wait()
	}
	if w.err != nil {
		return w.err
	}
	if w.oldest.IsZero() {
		w.oldest = time.Now()
	}
	w.queue = append(w.queue, *k)
	if !k.Mark {
		w.closeSeries(st, int32(idx), k)
	}
	if len(w.queue) == w.cfg.BatchRows {
		w.signal()
	}
	return nil
}

func (w *Writer) growSeries(idx int) {
	n := max(2*len(w.series), idx+1, 64*len(w.intervals))
	s := make([]seriesState, n)
	copy(s, w.series)
	w.series = s
	w.latest = append(w.latest, make([]shard.Kline, n-len(w.latest))...)
}

func (w *Writer) initSeries(st *seriesState, k *shard.Kline) {
	st.init = true
	st.openTime = noOpen
	st.lastClosed = noOpen
	if len(w.stored) == 0 {
		return
	}
	key := w.symbols.Load().Name(k.Symbol) + "\x00" + w.intervals[k.Interval].Name
	if t, ok := w.stored[key]; ok {
		st.openTime = t
		delete(w.stored, key)
	}
}

// update coalesces an open kline's state (see the restart contract on Writer).
func (w *Writer) update(st *seriesState, idx int32, k *shard.Kline) {
	switch {
	case k.OpenTime <= st.lastClosed:
		w.c.staleUpdates.Add(1) // the period is closed: its closed state is stored
	case st.openTime == noOpen || k.OpenTime == st.openTime:
		st.openTime = k.OpenTime
		w.latest[idx] = *k
		w.markDirty(st, idx)
	case k.OpenTime > st.openTime:
		// A newer period: the older one, still open, keeps its row.
		if st.dirty {
			w.older = append(w.older, w.latest[idx])
		}
		st.openTime = k.OpenTime
		w.latest[idx] = *k
		w.markDirty(st, idx)
	default:
		w.older = append(w.older, *k)
		w.c.olderOpen.Add(1)
		if w.oldest.IsZero() {
			w.oldest = time.Now()
		}
	}
}

func (w *Writer) markDirty(st *seriesState, idx int32) {
	st.dirty = true
	if !st.listed {
		st.listed = true
		w.dirty = append(w.dirty, idx)
	}
	if w.oldest.IsZero() {
		w.oldest = time.Now()
	}
}

// closeSeries records that k, a closed kline, replaces its open row.
func (w *Writer) closeSeries(st *seriesState, idx int32, k *shard.Kline) {
	st.lastClosed = max(st.lastClosed, k.OpenTime)
	if st.openTime == noOpen || k.OpenTime < st.openTime {
		return // an older open period closed: its row is replaced
	}
	if k.OpenTime > st.openTime {
		// The stored open kline was never closed (an input that stopped, a symbol
		// resumed from elsewhere): it stays open in the database.
		w.c.orphans.Add(1)
	}
	st.openTime = noOpen
	st.dirty = false
}

func (w *Writer) signal() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Close commits everything queued and stops the writer goroutine; it does not close
// the DB. It returns the writer's error, if it gave up.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.closed = true
	w.mu.Unlock()
	w.signal()
	<-w.done
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if cerr := w.closeConn(); cerr != nil && err == nil {
		err = fmt.Errorf("cannot close store writer: %w", cerr)
	}
	return err
}

// Sync commits everything queued so far and returns when it is committed, or with
// the writer's error. Any goroutine; not after Close.
func (w *Writer) Sync() error {
	ack := make(chan error, 1)
	select {
	case w.syncs <- ack:
		return <-ack
	case <-w.done:
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.err != nil {
			return w.err
		}
		return ErrClosed
	}
}

// Counters returns a snapshot of the writer's counters; any goroutine.
func (w *Writer) Counters() Counters {
	w.mu.Lock()
	queued := len(w.queue)
	lag := w.lag(time.Now())
	w.mu.Unlock()
	c := &w.c
	return Counters{
		Rows: c.rows.Load(), OpenRows: c.openRows.Load(), Marks: c.marks.Load(), MarksMissing: c.marksMissing.Load(),
		Batches: c.batches.Load(), Bytes: c.bytes.Load(), BackpressureWaits: c.backpressure.Load(),
		WriteErrors: c.writeErrors.Load(), Deleted: c.deleted.Load(), Compacted: c.compacted.Load(), OlderOpen: c.olderOpen.Load(),
		StaleUpdates: c.staleUpdates.Load(), OrphanOpen: c.orphans.Load(),
		Queued: queued, Lag: lag,
	}
}

// lag is the age of the oldest event not committed; w.mu held.
func (w *Writer) lag(now time.Time) time.Duration {
	oldest := w.oldest
	if t := w.inflight.Load(); t != 0 && (oldest.IsZero() || t < oldest.UnixNano()) {
		oldest = time.Unix(0, t)
	}
	if oldest.IsZero() {
		return 0
	}
	return now.Sub(oldest)
}

// batch is what the writer goroutine takes from the queue at once.
type batch struct {
	closed []shard.Kline // closed klines and marks, in arrival order
	open   []shard.Kline // newest state of open klines
}

// take swaps the queue out and collects the dirty open states.
func (w *Writer) take() (b batch, closing bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b.closed, w.queue = w.queue, w.spare[:0]
	b.open = w.open[:0]
	// Older periods' states first, one per kline (the last), none of a period
	// closed meanwhile: its closed state is in b.closed.
	if len(w.older) > 0 {
		slices.SortStableFunc(w.older, func(x, y shard.Kline) int {
			if c := cmp.Compare(int64(w.seriesIndex(&x)), int64(w.seriesIndex(&y))); c != 0 {
				return c
			}
			return cmp.Compare(x.OpenTime, y.OpenTime)
		})
		for i := range w.older {
			k := &w.older[i]
			if k.OpenTime <= w.series[w.seriesIndex(k)].lastClosed {
				continue
			}
			if i+1 < len(w.older) && w.seriesIndex(&w.older[i+1]) == w.seriesIndex(k) && w.older[i+1].OpenTime == k.OpenTime {
				continue // a newer state of the same kline follows
			}
			b.open = append(b.open, *k)
		}
		w.older = w.older[:0]
	}
	for _, idx := range w.dirty {
		st := &w.series[idx]
		st.listed = false
		if st.dirty {
			st.dirty = false
			b.open = append(b.open, w.latest[idx])
		}
	}
	w.dirty = w.dirty[:0]
	if !w.oldest.IsZero() {
		w.inflight.Store(w.oldest.UnixNano())
		w.oldest = time.Time{}
	}
	w.notFull.Broadcast()
	return b, w.closed
}

func (w *Writer) run() {
	defer close(w.done)
	timer := time.NewTimer(w.cfg.CommitEvery)
	defer timer.Stop()
	for {
		var ack chan error
		if !w.behind {
			select {
			case <-w.kick:
			case ack = <-w.syncs:
			case <-timer.C:
				timer.Reset(w.cfg.CommitEvery)
			}
		}
		b, closing := w.take()
		if len(b.closed)+len(b.open) > 0 {
			if err := w.commitRetrying(b); err != nil {
				w.mu.Lock()
				w.err = err
				w.notFull.Broadcast()
				w.mu.Unlock()
				if ack != nil {
					ack <- err
				}
				return
			}
		}
		w.inflight.Store(0)
		w.spare, w.open = b.closed[:0], b.open[:0]
		if ack != nil {
			ack <- nil
		}
		if closing {
			if w.bulk {
				w.closeBulk()
			}
			return
		}
		if w.cfg.Compact > 0 && !w.bulk && time.Since(w.compactAt) >= w.cfg.RetentionEvery {
			w.compactAt = time.Now()
			if _, err := w.compact(); err != nil {
				w.c.writeErrors.Add(1)
				w.log.Warn("store: cannot compact klines; trying again later", zap.String("db", w.cfg.Path), zap.Error(err))
			}
		}
		if len(w.cfg.Retention) > 0 && !w.bulk && (w.behind || time.Since(w.retainAt) >= w.cfg.RetentionEvery) {
			w.retainAt = time.Now()
			if err := w.retain(); err != nil {
				w.c.writeErrors.Add(1)
				w.behind = false
				w.log.Warn("store: cannot apply retention; trying again later", zap.String("db", w.cfg.Path), zap.Error(err))
			}
		}
	}
}

// closeBulk finishes a bulk load at Close and applies the retention it held back.
func (w *Writer) closeBulk() {
	if err := w.finishBulk(); err != nil {
		w.log.Error("store: cannot finish the bulk load; the next Open finishes it", zap.String("db", w.cfg.Path), zap.Error(err))
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
		return
	}
	for first := true; len(w.cfg.Retention) > 0 && (first || w.behind); first = false {
		if err := w.retain(); err != nil {
			w.c.writeErrors.Add(1)
			w.log.Warn("store: cannot apply retention after the bulk load", zap.String("db", w.cfg.Path), zap.Error(err))
			return
		}
	}
}

// commitRetrying commits b, retrying with backoff until it succeeds or has failed
// for FailAfter.
func (w *Writer) commitRetrying(b batch) error {
	var first time.Time
	var lastLog time.Time
	wait := w.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := w.commit(b)
		if err == nil {
			if attempt > 1 {
				w.log.Info("store: writing again", zap.String("db", w.cfg.Path), zap.Int("attempts", attempt), zap.Duration("after", time.Since(first)))
			}
			return nil
		}
		w.c.writeErrors.Add(1)
		now := time.Now()
		if attempt == 1 {
			first = now
			lastLog = now
			w.log.Error("store: cannot commit klines; retrying", zap.String("db", w.cfg.Path),
				zap.Int("closed", len(b.closed)), zap.Int("open", len(b.open)), zap.Error(err))
		} else if now.Sub(lastLog) >= 5*time.Second {
			lastLog = now
			w.log.Error("store: still cannot commit klines", zap.String("db", w.cfg.Path),
				zap.Int("attempts", attempt), zap.Duration("for", now.Sub(first)), zap.Error(err))
		}
		if now.Sub(first) >= w.cfg.FailAfter {
			w.log.Error("store: giving up", zap.String("db", w.cfg.Path), zap.Int("attempts", attempt), zap.Error(err))
			return fmt.Errorf("cannot write klines to %s: failing for %v (%d attempts): %w", w.cfg.Path, now.Sub(first).Round(time.Millisecond), attempt, err)
		}
		time.Sleep(min(wait, w.cfg.FailAfter-now.Sub(first)+time.Millisecond))
		wait = min(2*wait, w.cfg.RetryMax)
	}
}

// commit writes b in one transaction on the writer's connection.
func (w *Writer) commit(b batch) (err error) {
	ctx := context.Background()
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("cannot begin transaction: %w", err)
	}
	w.newIDs = w.newIDs[:0]
	clear(w.raised)
	defer func() {
		if err != nil {
			_, _ = w.conn.ExecContext(ctx, "ROLLBACK")
			for _, idx := range w.newIDs { // rolled back with the transaction
				w.ids[idx], w.through[idx] = 0, 0
			}
		}
	}()
	if err := w.resolve(ctx, b.closed); err != nil {
		return err
	}
	if err := w.resolve(ctx, b.open); err != nil {
		return err
	}
	var st stats
	err = w.conn.Raw(func(any) error {
		var err error
		if st, err = w.writeRows(b); err != nil {
			return err
		}
		return w.raiseThrough(b)
	})
	if err != nil {
		return err
	}
	if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("cannot commit: %w", err)
	}
	for idx, t := range w.raised {
		w.through[idx] = t
	}
	w.noteWindows(b)
	w.c.rows.Add(st.rows)
	w.c.openRows.Add(st.open)
	w.c.marks.Add(st.marks)
	w.c.marksMissing.Add(st.marksMissing)
	w.c.bytes.Add(st.bytes)
	w.c.batches.Add(1)
	return nil
}

type stats struct{ rows, open, marks, marksMissing, bytes uint64 }

// seriesIndex is the series index of k; k's interval was checked by Kline.
func (w *Writer) seriesIndex(k *shard.Kline) int {
	return int(k.Symbol)*len(w.intervals) + int(k.Interval)
}

// resolve makes sure every kline in ks has a series id: the series new to the
// writer are added (when missing) with one statement and read back with another,
// whatever their number (a replay of 500 symbols starts 7,500 series at once).
func (w *Writer) resolve(ctx context.Context, ks []shard.Kline) error {
	var syms *parse.Symbols
	type pair [2]string
	var missing []pair
	idxOf := map[pair]int{}
	for i := range ks {
		idx := w.seriesIndex(&ks[i])
		if idx < len(w.ids) && w.ids[idx] != 0 {
			continue
		}
		if idx >= len(w.ids) {
			n := max(2*len(w.ids), idx+1, 64*len(w.intervals))
			w.ids = append(w.ids, make([]int64, n-len(w.ids))...)
			w.through = append(w.through, make([]int64, n-len(w.through))...)
		}
		if syms == nil {
			syms = w.symbols.Load()
		}
		name := syms.Name(ks[i].Symbol)
		if name == "" {
			return fmt.Errorf("cannot store kline: symbol index %d is not in the symbol table", ks[i].Symbol)
		}
		p := pair{name, w.intervals[ks[i].Interval].Name}
		if _, ok := idxOf[p]; !ok {
			idxOf[p] = idx
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	list, err := json.Marshal(missing)
	if err != nil {
		return fmt.Errorf("cannot add series: %w", err)
	}
	if _, err := w.conn.ExecContext(ctx, `INSERT INTO series(market, symbol, interval)
		SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2) WHERE true
		ON CONFLICT DO NOTHING`, w.cfg.Market, string(list)); err != nil {
		return fmt.Errorf("cannot add %d series: %w", len(missing), err)
	}
	// All the market's series: a scan of a small table, cheaper than a lookup per
	// series through database/sql.
	rows, err := w.conn.QueryContext(ctx, "SELECT id, through, symbol, interval FROM series WHERE market = ?", w.cfg.Market)
	if err != nil {
		return fmt.Errorf("cannot read series: %w", err)
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var id, through int64
		var p pair
		if err := rows.Scan(&id, &through, &p[0], &p[1]); err != nil {
			return fmt.Errorf("cannot read series: %w", err)
		}
		idx, ok := idxOf[p]
		if !ok {
			continue
		}
		w.ids[idx], w.through[idx] = id, through
		w.newIDs = append(w.newIDs, int32(idx))
		found++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read series: %w", err)
	}
	if found != len(missing) {
		return fmt.Errorf("cannot read series: %d of %d added series found", found, len(missing))
	}
	return nil
}

// The writer's statements. A closed kline replaces the row of its key (a
// correction); an open state never replaces a closed row; in bulk mode rows are
// appended (no key index) and marks wait in the marks table.
const (
	insertSQL  = "INSERT INTO klines(" + rowColumns + ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)"
	upsertTail = ` ON CONFLICT(series, open_time) DO UPDATE SET close_time = excluded.close_time,
	open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
	volume = excluded.volume, quote_volume = excluded.quote_volume, count = excluded.count,
	taker_buy_volume = excluded.taker_buy_volume, taker_buy_quote_volume = excluded.taker_buy_quote_volume,
	first_trade_id = excluded.first_trade_id, last_trade_id = excluded.last_trade_id,
	first_agg_id = excluded.first_agg_id, last_agg_id = excluded.last_agg_id,
	closed = excluded.closed, flags = excluded.flags`
	upsertClosedSQL = insertSQL + upsertTail
	upsertOpenSQL   = insertSQL + upsertTail + " WHERE klines.closed = 0"
	markSQL         = "UPDATE klines SET flags = flags | ?1 WHERE series = ?3 AND open_time = ?2"
	bulkMarkSQL     = "INSERT INTO marks(flags, open_time, series) VALUES (?1, ?2, ?3)"
	throughSQL      = "UPDATE series SET through = ?1 WHERE id = ?2 AND through < ?1"
)

// eventKey orders a batch's closed klines and marks by key, arrival order within a
// key: each key's events apply in the order they came, and a series' rows of one
// batch land next to each other in the table (reads of a range touch fewer pages).
type eventKey struct {
	series, openTime int64
	pos              int32
}

func cmpEventKey(a, b eventKey) int {
	switch {
	case a.series != b.series:
		return cmp.Compare(a.series, b.series)
	case a.openTime != b.openTime:
		return cmp.Compare(a.openTime, b.openTime)
	}
	return int(a.pos - b.pos)
}

// writeRows writes b's rows and marks through w.rc; inside w.conn.Raw.
func (w *Writer) writeRows(b batch) (st stats, err error) {
	w.order = w.order[:0]
	for i := range b.closed {
		k := &b.closed[i]
		w.order = append(w.order, eventKey{w.ids[w.seriesIndex(k)], k.OpenTime, int32(i)})
	}
	slices.SortFunc(w.order, cmpEventKey)
	closedSQL, marksSQL := upsertClosedSQL, markSQL
	if w.bulk {
		closedSQL, marksSQL = insertSQL, bulkMarkSQL
	}
	w.rows, w.text = w.rows[:0], w.text[:0]
	flush := func(q string) error {
		_, err := w.rc.insert(q, w.rows, w.text)
		w.rows, w.text = w.rows[:0], w.text[:0]
		return err
	}
	for _, e := range w.order {
		k := &b.closed[e.pos]
		if !k.Mark {
			w.rows = append(w.rows, dbRow{})
			w.text = encodeRow(&w.rows[len(w.rows)-1], w.text, e.series, k)
			st.bytes += rowBytes(&w.rows[len(w.rows)-1])
			st.rows++
			continue
		}
		if err := flush(closedSQL); err != nil {
			return st, fmt.Errorf("cannot write closed klines: %w", err)
		}
		n, err := w.rc.exec(marksSQL, int64(k.Flags), k.OpenTime, e.series)
		if err != nil {
			return st, fmt.Errorf("cannot mark kline: %w", err)
		}
		switch {
		case w.bulk: // counted when the load finishes
		case n == 0:
			st.marksMissing++
		default:
			st.marks++
		}
	}
	if err := flush(closedSQL); err != nil {
		return st, fmt.Errorf("cannot write closed klines: %w", err)
	}
	if w.bulk {
		for _, k := range b.open {
			w.pendingOpen[[2]int64{int64(w.seriesIndex(&k)), k.OpenTime}] = k
		}
		return st, nil
	}
	for i := range b.open {
		k := &b.open[i]
		w.rows = append(w.rows, dbRow{})
		w.text = encodeRow(&w.rows[len(w.rows)-1], w.text, w.ids[w.seriesIndex(k)], k)
		st.bytes += rowBytes(&w.rows[len(w.rows)-1])
		st.open++
	}
	if err := flush(upsertOpenSQL); err != nil {
		return st, fmt.Errorf("cannot write open klines: %w", err)
	}
	return st, nil
}

// raiseThrough raises, per series of the batch, the stored Through to the largest
// last aggTrade id of its written rows, in the same transaction as the rows; inside
// w.conn.Raw. The cache w.through follows only after the commit (see commit).
// Open states a bulk load holds back do not count: they are not written.
func (w *Writer) raiseThrough(b batch) error {
	for j, ks := range [2][]shard.Kline{b.closed, b.open} {
		if j == 1 && w.bulk {
			break
		}
		for i := range ks {
			k := &ks[i]
			if k.Mark || k.LastAggID < 0 {
				continue
			}
			idx := w.seriesIndex(k)
			if k.LastAggID > max(w.through[idx], w.raised[idx]) {
				w.raised[idx] = k.LastAggID
			}
		}
	}
	for idx, t := range w.raised {
		if _, err := w.rc.exec(throughSQL, t, w.ids[idx]); err != nil {
			return fmt.Errorf("cannot update series through: %w", err)
		}
	}
	return nil
}
