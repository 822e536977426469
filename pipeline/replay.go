package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klagg/klagg/record"
)

// replayFlushEvery is how many records a replay source hands over between two
// publications of its watermark.
const replayFlushEvery = 4096

// Replay is a Source that reads recorded inputs (see record.Open) in the order
// given, one after the other, on one goroutine: files of one symbol for consecutive
// days must be read in order, or their trades would be duplicates and late
// corrections (ReplaySources orders them by the dates in their names). Files of
// different symbols belong in different sources (see ReplaySources), or the later
// files' trades would all be behind the watermark.
type Replay struct {
	Paths []string
}

// ReplaySources groups inputs into sources that may run side by side: one per
// symbol for aggTrades CSV files, and one for all recorded frame files in the order
// given (a capture holds many symbols in time order). The pipeline's watermark is
// the smallest of the sources', so no source's trades turn late because another
// ran ahead.
//
// A symbol's CSV files are read in the order of the dates in their names
// (record.FileDate: SYMBOL-aggTrades-2025-01-02.zip, or -2025-01 for a month),
// whatever the order given: day files given out of order would otherwise turn
// the earlier days' trades into duplicates. Two files for the same day, a month
// and one of its days, or dated and undated files of one symbol are an error,
// as is a path given twice; a symbol's undated files are read in the order given.
// Every input is opened once here, so a missing, misnamed or unreadable file fails
// before anything runs.
func ReplaySources(paths []string) ([]Source, error) {
	type csvInput struct{ path, date string }
	var frames *Replay
	var sources []Source
	bySymbol := map[string]*Replay{}
	csvs := map[string][]csvInput{}
	var symbols []string // in order of first appearance, so errors are reproducible
	given := map[string]string{}
	for _, path := range paths {
		clean := filepath.Clean(path)
		if first, twice := given[clean]; twice {
			also := ""
			if first != path {
				also = fmt.Sprintf(" (first as %q)", first)
			}
			return nil, fmt.Errorf("cannot replay %q: given twice%s", path, also)
		}
		given[clean] = path
		in, err := record.Open(path)
		if err != nil {
			return nil, err
		}
		format, symbol := in.Format(), in.Symbol()
		in.Close()
		if format != record.FormatCSV {
			if frames == nil {
				frames = &Replay{}
				sources = append(sources, frames)
			}
			frames.Paths = append(frames.Paths, path)
			continue
		}
		if bySymbol[symbol] == nil {
			bySymbol[symbol] = &Replay{}
			sources = append(sources, bySymbol[symbol])
			symbols = append(symbols, symbol)
		}
		date, _ := record.FileDate(path)
		csvs[symbol] = append(csvs[symbol], csvInput{path, date})
	}
	for _, symbol := range symbols {
		files := csvs[symbol]
		undated := slices.IndexFunc(files, func(f csvInput) bool { return f.date == "" })
		switch {
		case undated < 0:
			slices.SortStableFunc(files, func(a, b csvInput) int { return strings.Compare(a.date, b.date) })
			for i := 1; i < len(files); i++ {
				// Equal dates, or a month ("2025-01") and one of its days.
				if a, b := files[i-1], files[i]; a.date == b.date || strings.HasPrefix(b.date, a.date+"-") {
					return nil, fmt.Errorf("cannot order %s's inputs: %q (%s) and %q (%s) overlap",
						symbol, a.path, a.date, b.path, b.date)
				}
			}
		case slices.ContainsFunc(files, func(f csvInput) bool { return f.date != "" }):
			return nil, fmt.Errorf("cannot order %s's inputs: %q has no date in its name, others have "+
				"(want SYMBOL-aggTrades-YYYY-MM-DD.csv or .zip)", symbol, files[undated].path)
		}
		r := bySymbol[symbol]
		for _, f := range files {
			r.Paths = append(r.Paths, f.path)
		}
	}
	return sources, nil
}

// Run implements Source.
func (r *Replay) Run(ctx context.Context, f *Feeder) error {
	for _, path := range r.Paths {
		if err := r.replay(ctx, f, path); err != nil {
			return err
		}
	}
	return nil
}

func (r *Replay) replay(ctx context.Context, f *Feeder, path string) error {
	in, err := record.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	var symbol uint32
	if in.Format() == record.FormatCSV {
		table := f.Symbols().Add(in.Symbol())
		var ok bool
		if symbol, ok = table.Lookup([]byte(in.Symbol())); !ok {
			return fmt.Errorf("BUG: symbol %q missing right after it was added", in.Symbol())
		}
		// A day (or month) file holds every trade from its midnight on.
		if start, ok := fileStart(path); ok {
			f.MarkPartial(start)
		}
	}
	for n := 1; ; n++ {
		rec, err := in.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, record.ErrLineTooLong) {
			f.tooLarge(rec)
			continue
		}
		if err != nil {
			return fmt.Errorf("cannot read %s line %d: %w", path, in.Line(), err)
		}
		if in.Format() == record.FormatCSV {
			f.CSVRow(rec, symbol)
		} else {
			f.captureFrame(rec)
		}
		if n%replayFlushEvery == 0 {
			f.Flush()
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	f.Flush()
	return nil
}

// Frames is a Source that hands over frames held in memory, in order (benchmarks, the
// demo and tests).
type Frames struct {
	Frames [][]byte
}

// Run implements Source.
func (s *Frames) Run(ctx context.Context, f *Feeder) error {
	for i, frame := range s.Frames {
		f.Frame(frame)
		if (i+1)%replayFlushEvery == 0 {
			f.Flush()
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	f.Flush()
	return nil
}

// fileStart returns the Unix ms at which a dated data.binance.vision file
// starts (midnight UTC of its day, or of its month's first day).
func fileStart(path string) (int64, bool) {
	date, ok := record.FileDate(path)
	if !ok {
		return 0, false
	}
	for _, layout := range []string{"2006-01-02", "2006-01"} {
		if t, err := time.Parse(layout, date); err == nil {
			return t.UnixMilli(), true
		}
	}
	return 0, false
}
