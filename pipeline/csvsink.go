package pipeline

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// csvFlushBytes is how much a CSV file buffers before it is appended to disk. Files are
// opened only to append, so thousands of (symbol, interval) files need no open
// descriptors in between.
const csvFlushBytes = 64 << 10

// CSVDir is a Sink that writes every closed kline to DIR/<SYMBOL>-<interval>.csv, one
// file per symbol and interval, in open-time order, with shard.CSVHeader first. A
// corrected kline (a late trade) replaces its row when the sink is closed.
type CSVDir struct {
	dir         string
	symbols     *parse.SymbolTable
	intervals   []shard.Interval
	files       map[fileKey]*csvFile
	corrections map[fileKey]map[int64]shard.Kline

	// Skipped counts klines not written because their symbol is not usable as a
	// file name; read it after Close.
	Skipped uint64
}

type fileKey struct {
	symbol   uint32
	interval uint8
}

type csvFile struct {
	path    string
	buf     []byte
	last    int64 // open time of the newest row written or buffered
	written bool  // the file exists with its header
}

// NewCSVDir creates dir if needed. Files of earlier runs are replaced when their first
// kline arrives.
func NewCSVDir(dir string, symbols *parse.SymbolTable, intervals []shard.Interval) (*CSVDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create output directory: %w", err)
	}
	return &CSVDir{
		dir:         dir,
		symbols:     symbols,
		intervals:   intervals,
		files:       make(map[fileKey]*csvFile),
		corrections: make(map[fileKey]map[int64]shard.Kline),
	}, nil
}

// Kline implements Sink; running updates are ignored.
func (s *CSVDir) Kline(k *shard.Kline) error {
	if !k.Closed {
		return nil
	}
	key := fileKey{k.Symbol, k.Interval}
	f := s.files[key]
	if f == nil {
		name := s.symbols.Load().Name(k.Symbol)
		if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
			// Not a file name: skip this symbol's klines, count them, keep the rest.
			s.Skipped++
			return nil
		}
		f = &csvFile{path: filepath.Join(s.dir, name+"-"+s.intervals[k.Interval].Name+".csv"), last: -1 << 62}
		f.buf = append(f.buf, shard.CSVHeader...)
		f.buf = append(f.buf, '\n')
		s.files[key] = f
	}
	if k.OpenTime <= f.last {
		c := s.corrections[key]
		if c == nil {
			c = make(map[int64]shard.Kline)
			s.corrections[key] = c
		}
		c[k.OpenTime] = *k
		return nil
	}
	f.last = k.OpenTime
	f.buf = k.AppendCSV(f.buf)
	f.buf = append(f.buf, '\n')
	if len(f.buf) >= csvFlushBytes {
		return f.flush()
	}
	return nil
}

func (f *csvFile) flush() error {
	flags := os.O_WRONLY | os.O_APPEND
	if !f.written {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	fd, err := os.OpenFile(f.path, flags, 0o644)
	if err != nil {
		return fmt.Errorf("cannot open kline file: %w", err)
	}
	if _, err := fd.Write(f.buf); err != nil {
		fd.Close()
		return fmt.Errorf("cannot write kline file: %w", err)
	}
	f.written = true
	f.buf = f.buf[:0]
	return fd.Close()
}

// Close writes what is buffered and applies corrections.
func (s *CSVDir) Close() error {
	for _, f := range s.files {
		if err := f.flush(); err != nil {
			return err
		}
	}
	for key, c := range s.corrections {
		if err := s.files[key].correct(c); err != nil {
			return err
		}
	}
	return nil
}

// Files returns the paths written, sorted.
func (s *CSVDir) Files() []string {
	var paths []string
	for _, f := range s.files {
		paths = append(paths, f.path)
	}
	slices.Sort(paths)
	return paths
}

// correct rewrites the file with corrected rows in place of the rows of the same open
// time. Corrections are rare (late trades), so reading the file back is fine.
func (f *csvFile) correct(rows map[int64]shard.Kline) error {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("cannot read kline file for corrections: %w", err)
	}
	var out []byte
	for line := range bytes.Lines(data) {
		i := bytes.IndexByte(line, ',')
		if i > 0 {
			if t, err := strconv.ParseInt(string(line[:i]), 10, 64); err == nil {
				if k, ok := rows[t]; ok {
					out = k.AppendCSV(out)
					out = append(out, '\n')
					continue
				}
			}
		}
		out = append(out, line...)
	}
	if err := os.WriteFile(f.path, out, 0o644); err != nil {
		return fmt.Errorf("cannot write corrected kline file: %w", err)
	}
	return nil
}
