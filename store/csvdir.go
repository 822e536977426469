package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// CSVDir is a Sink that writes closed klines to DIR/<SYMBOL>-<interval>.csv in
// pipeline.CSVDir's layout (shard.CSVHeader, then one row per kline in open-time
// order, Kline.AppendCSV), safely across restarts and crashes:
//
//   - files an earlier run wrote are appended to, never truncated;
//   - rows are written to the files every FlushEvery (1 s) and at Close, so a
//     crash of the process loses at most that much (Close also fsyncs);
//   - a kline whose open time is at or before the file's last row is a
//     correction: identical rows (a restart replaying what was written) are
//     skipped, different ones replace their row, missing ones are inserted in
//     order; the file is rewritten to a temporary file, fsynced and renamed over
//     the old one, so it is never seen half-corrected. Marks (Kline.Mark) add their
//     quality flags to the row's last column the same way;
//   - a last line cut short by a crash (no newline) is removed before the first
//     append, and logged.
//
// Kline and Close are called on the sink goroutine; the flushes run on a goroutine
// of CSVDir's own.
type CSVDir struct {
	dir       string
	symbols   *parse.SymbolTable
	intervals []shard.Interval
	log       *zap.Logger
	every     time.Duration

	mu      sync.Mutex
	files   map[csvKey]*csvFile
	err     error // the first write failure: returned by Kline and Close
	closed  bool
	flushMu sync.Mutex // serialises flushes (the goroutine's and Close's)

	stop chan struct{}
	done chan struct{}

	c CSVCounters
}

// CSVCounters counts what a CSVDir did; read them after Close.
type CSVCounters struct {
	Rows        uint64 // rows appended
	Corrected   uint64 // rows replaced by a different kline, or inserted
	Duplicates  uint64 // klines identical to their stored row, skipped
	Marked      uint64 // rows whose flags a mark changed
	Rewrites    uint64 // files rewritten for corrections or marks
	Skipped     uint64 // klines of symbols that are no file name
	Truncated   uint64 // partial last lines removed from earlier runs' files
	MarkMissing uint64 // marks of rows the file does not hold
}

type csvKey struct {
	symbol   uint32
	interval uint8
}

type csvFile struct {
	path   string
	buf    []byte // rows to append
	last   int64  // open time of the newest row in the file or in buf
	exists bool   // the file holds at least its header
	fix    map[int64]shard.Kline
	marks  map[int64]shard.Flags
}

// CSVConfig configures a CSVDir.
type CSVConfig struct {
	// FlushEvery is how often buffered rows are written to the files.
	FlushEvery time.Duration
}

// DefaultCSVConfig flushes every second.
func DefaultCSVConfig() CSVConfig { return CSVConfig{FlushEvery: time.Second} }

// NewCSVDir creates dir if needed and starts the flushing goroutine.
func NewCSVDir(dir string, symbols *parse.SymbolTable, intervals []shard.Interval, cfg CSVConfig, log *zap.Logger) (*CSVDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create output directory: %w", err)
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = DefaultCSVConfig().FlushEvery
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &CSVDir{
		dir: dir, symbols: symbols, intervals: intervals, log: log, every: cfg.FlushEvery,
		files: make(map[csvKey]*csvFile),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go s.run()
	return s, nil
}

func (s *CSVDir) run() {
	defer close(s.done)
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.flush(false); err != nil {
				s.mu.Lock()
				if s.err == nil {
					s.err = err
					s.log.Error("csv: cannot write klines", zap.String("dir", s.dir), zap.Error(err))
				}
				s.mu.Unlock()
			}
		}
	}
}

// Kline implements the pipeline's Sink; running updates are ignored.
func (s *CSVDir) Kline(k *shard.Kline) error {
	if !k.Closed {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.closed {
		return errors.New("cannot write kline: the CSV directory is closed")
	}
	key := csvKey{k.Symbol, k.Interval}
	f := s.files[key]
	if f == nil {
		var err error
		if f, err = s.openFile(k); err != nil {
			s.err = err
			return err
		}
		if f == nil {
			s.c.Skipped++
			return nil
		}
		s.files[key] = f
	}
	switch {
	case k.Mark:
		if f.marks == nil {
			f.marks = map[int64]shard.Flags{}
		}
		f.marks[k.OpenTime] |= k.Flags
	case k.OpenTime > f.last:
		f.last = k.OpenTime
		f.buf = k.AppendCSV(f.buf)
		f.buf = append(f.buf, '\n')
		s.c.Rows++
	default:
		if f.fix == nil {
			f.fix = map[int64]shard.Kline{}
		}
		f.fix[k.OpenTime] = *k
	}
	return nil
}

// openFile prepares the file of k's series: it reads an existing file's last open
// time (cutting a partial last line). It returns nil for a symbol that is no file
// name.
func (s *CSVDir) openFile(k *shard.Kline) (*csvFile, error) {
	if int(k.Interval) >= len(s.intervals) {
		return nil, fmt.Errorf("cannot write kline: interval index %d, the sink has %d intervals", k.Interval, len(s.intervals))
	}
	name := s.symbols.Load().Name(k.Symbol)
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return nil, nil
	}
	f := &csvFile{path: filepath.Join(s.dir, name+"-"+s.intervals[k.Interval].Name+".csv"), last: -1 << 62}
	last, exists, cut, err := lastRow(f.path)
	if err != nil {
		return nil, err
	}
	if cut > 0 {
		s.c.Truncated++
		s.log.Warn("csv: removed a partial last line an earlier run left", zap.String("file", f.path), zap.Int64("bytes", cut))
	}
	f.exists = exists
	if exists {
		f.last = last
	} else {
		f.buf = append(f.buf, shard.CSVHeader...)
		f.buf = append(f.buf, '\n')
	}
	return f, nil
}

// lastRow checks an existing kline file's header and returns the open time of its
// last row (or -1<<62 when it has none), cutting a last line without its newline.
func lastRow(path string) (last int64, exists bool, cut int64, err error) {
	last = -1 << 62
	fd, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return last, false, 0, nil
	}
	if err != nil {
		return last, false, 0, fmt.Errorf("cannot open kline file: %w", err)
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return last, false, 0, fmt.Errorf("cannot stat kline file: %w", err)
	}
	size := st.Size()
	if size == 0 {
		if _, err := fd.WriteString(shard.CSVHeader + "\n"); err != nil {
			return last, false, 0, fmt.Errorf("cannot write kline file header: %w", err)
		}
		return last, true, 0, nil
	}
	header := []byte(shard.CSVHeader + "\n")
	head := make([]byte, min(size, int64(len(header))))
	if _, err := fd.ReadAt(head, 0); err != nil {
		return last, false, 0, fmt.Errorf("cannot read kline file: %w", err)
	}
	if !bytes.HasPrefix(header, head) {
		return last, false, 0, fmt.Errorf("cannot append to %s: its first line is not the kline header %q", path, shard.CSVHeader)
	}
	if len(head) < len(header) { // a header cut short by a crash
		if err := fd.Truncate(0); err != nil {
			return last, false, 0, fmt.Errorf("cannot rewrite the header of %s: %w", path, err)
		}
		if _, err := fd.WriteAt(header, 0); err != nil {
			return last, false, 0, fmt.Errorf("cannot rewrite the header of %s: %w", path, err)
		}
		return last, true, size, nil
	}
	tail := make([]byte, min(size, 64<<10))
	if _, err := fd.ReadAt(tail, size-int64(len(tail))); err != nil && !errors.Is(err, io.EOF) {
		return last, false, 0, fmt.Errorf("cannot read kline file: %w", err)
	}
	if tail[len(tail)-1] != '\n' {
		nl := bytes.LastIndexByte(tail, '\n')
		if nl < 0 {
			return last, false, 0, fmt.Errorf("cannot append to %s: its last line is longer than 64 KiB", path)
		}
		cut = int64(len(tail) - nl - 1)
		if err := fd.Truncate(size - cut); err != nil {
			return last, false, 0, fmt.Errorf("cannot cut the partial last line of %s: %w", path, err)
		}
		tail = tail[:nl+1]
	}
	lines := bytes.Split(bytes.TrimSuffix(tail, []byte{'\n'}), []byte{'\n'})
	line := lines[len(lines)-1]
	if string(line) == shard.CSVHeader {
		return last, true, cut, nil
	}
	t, err := rowOpenTime(line)
	if err != nil {
		return last, false, cut, fmt.Errorf("cannot read the last row of %s: %w", path, err)
	}
	return t, true, cut, nil
}

func rowOpenTime(line []byte) (int64, error) {
	i := bytes.IndexByte(line, ',')
	if i <= 0 {
		return 0, fmt.Errorf("not a kline row: %q", line)
	}
	return strconv.ParseInt(string(line[:i]), 10, 64)
}

// flush appends buffered rows and applies corrections and marks. final also
// fsyncs every file.
func (s *CSVDir) flush(final bool) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	type work struct {
		f     *csvFile
		buf   []byte
		fix   map[int64]shard.Kline
		marks map[int64]shard.Flags
	}
	var todo []work
	s.mu.Lock()
	for _, f := range s.files {
		if len(f.buf) == 0 && f.fix == nil && f.marks == nil && !final {
			continue
		}
		todo = append(todo, work{f, f.buf, f.fix, f.marks})
		f.buf, f.fix, f.marks = nil, nil, nil
	}
	s.mu.Unlock()
	var errs []error
	for i, w := range todo {
		if err := s.write(w.f, w.buf, w.fix, w.marks, final); err != nil {
			// Put back what was not written, ahead of what came since.
			s.mu.Lock()
			for _, w := range todo[i:] {
				w.f.buf = append(w.buf, w.f.buf...)
				for t, k := range w.fix {
					if _, ok := w.f.fix[t]; !ok {
						if w.f.fix == nil {
							w.f.fix = map[int64]shard.Kline{}
						}
						w.f.fix[t] = k
					}
				}
				for t, m := range w.marks {
					if w.f.marks == nil {
						w.f.marks = map[int64]shard.Flags{}
					}
					w.f.marks[t] |= m
				}
			}
			s.mu.Unlock()
			return err
		}
	}
	return errors.Join(errs...)
}

func (s *CSVDir) write(f *csvFile, buf []byte, fix map[int64]shard.Kline, marks map[int64]shard.Flags, final bool) error {
	if len(buf) > 0 || (final && !f.exists) {
		fd, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("cannot open kline file: %w", err)
		}
		if _, err := fd.Write(buf); err != nil {
			fd.Close()
			return fmt.Errorf("cannot append to %s: %w", f.path, err)
		}
		f.exists = true
		if final {
			if err := fd.Sync(); err != nil {
				fd.Close()
				return fmt.Errorf("cannot sync %s: %w", f.path, err)
			}
		}
		if err := fd.Close(); err != nil {
			return fmt.Errorf("cannot close %s: %w", f.path, err)
		}
	}
	if len(fix) > 0 || len(marks) > 0 {
		return s.correct(f, fix, marks)
	}
	return nil
}

// correct rewrites f with fix's rows in place of (or inserted among) the rows of the
// same open times and marks' flags added, atomically (temporary file and rename).
// Identical rows change nothing; a file that would not change is not rewritten.
func (s *CSVDir) correct(f *csvFile, fix map[int64]shard.Kline, marks map[int64]shard.Flags) error {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("cannot read kline file for corrections: %w", err)
	}
	pending := make([]int64, 0, len(fix))
	for t := range fix {
		pending = append(pending, t)
	}
	slices.Sort(pending)
	out := make([]byte, 0, len(data)+len(fix)*128)
	changed := false
	var row []byte
	insertBefore := func(t int64) { // rows to insert that open before t
		for len(pending) > 0 && pending[0] < t {
			k := fix[pending[0]]
			out = k.AppendCSV(out)
			out = append(out, '\n')
			s.c.Corrected++
			changed = true
			pending = pending[1:]
		}
	}
	for i, line := range bytes.SplitAfter(data, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		if i == 0 {
			out = append(out, line...)
			continue
		}
		t, err := rowOpenTime(bytes.TrimSuffix(line, []byte{'\n'}))
		if err != nil {
			return fmt.Errorf("cannot correct %s: %w", f.path, err)
		}
		insertBefore(t)
		cur := line
		if k, ok := fix[t]; ok {
			pending = pending[1:]
			row = k.AppendCSV(row[:0])
			row = append(row, '\n')
			if bytes.Equal(row, line) {
				s.c.Duplicates++
			} else {
				s.c.Corrected++
				changed = true
				cur = slices.Clone(row)
			}
		}
		if m, ok := marks[t]; ok {
			delete(marks, t)
			if marked, ok := addFlags(cur, m); ok {
				s.c.Marked++
				changed = true
				cur = marked
			}
		}
		out = append(out, cur...)
	}
	insertBefore(1 << 62)
	s.c.MarkMissing += uint64(len(marks))
	if !changed {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("cannot correct %s: %w", f.path, err)
	}
	_, err = tmp.Write(out)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cannot correct %s: %w", f.path, err)
	}
	s.c.Rewrites++
	return nil
}

// addFlags returns line with the quality flags of m added to its last column, and
// whether that changed it.
func addFlags(line []byte, m shard.Flags) ([]byte, bool) {
	body := bytes.TrimSuffix(line, []byte{'\n'})
	i := bytes.LastIndexByte(body, ',')
	if i < 0 {
		return line, false
	}
	var have shard.Flags
	if col := string(body[i+1:]); col != "0" {
		var err error
		if have, err = shard.ParseFlags(col); err != nil {
			return line, false
		}
	}
	q := (have | m) & shard.QualityFlags
	if q == have&shard.QualityFlags {
		return line, false
	}
	out := append(slices.Clone(body[:i+1]), q.String()...)
	return append(out, '\n'), true
}

// Close writes and fsyncs everything buffered, applies corrections and stops the
// flushing goroutine.
func (s *CSVDir) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.err
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	err := s.flush(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	return err
}

// Counters returns the sink's counters; call it after Close.
func (s *CSVDir) Counters() CSVCounters { return s.c }

// Files returns the paths of the files written, sorted.
func (s *CSVDir) Files() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var paths []string
	for _, f := range s.files {
		paths = append(paths, f.path)
	}
	slices.Sort(paths)
	return paths
}
