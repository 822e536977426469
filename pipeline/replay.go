package pipeline

import (
	"context"
	"errors"
	"fmt"
	"github.com/klagg/klagg/record"
	"io"
)

// replayFlushEvery is how many records a replay source hands over between two
// publications of its watermark.
const replayFlushEvery = 4096

// Replay is a Source that reads recorded inputs (see record.Open) in the order
// given, one after the other, on one goroutine: files of one symbol for consecutive
// days must be read in order, or their trades would be duplicates and late
// corrections. Files of different symbols belong in different sources (see
// ReplaySources), or the later files' trades would all be behind the watermark.
type Replay struct {
	Paths []string
}

// ReplaySources groups inputs into sources that may run side by side: one per
// symbol for aggTrades CSV files (each symbol's files in the order given), and one
// for all recorded frame files (a capture holds many symbols in time order). The
// pipeline's watermark is the smallest of the sources', so no source's trades
// turn late because another ran ahead.
func ReplaySources(paths []string) ([]Source, error) {
	var frames *Replay
	bySymbol := map[string]*Replay{}
	var sources []Source
	for _, path := range paths {
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
		r := bySymbol[symbol]
		if r == nil {
			r = &Replay{}
			bySymbol[symbol] = r
			sources = append(sources, r)
		}
		r.Paths = append(r.Paths, path)
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
			f.Frame(rec)
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
