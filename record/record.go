package record

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Format is the record layout of a replay input.
type Format uint8

const (
	// FormatFrames is NDJSON of raw WebSocket text frames, one frame a line,
	// optionally behind a prefix such as a capture timestamp.
	FormatFrames Format = iota
	// FormatCSV is data.binance.vision aggTrades CSV, one aggTrade a row.
	FormatCSV
)

// String names the format for messages.
func (f Format) String() string {
	switch f {
	case FormatFrames:
		return "frames"
	case FormatCSV:
		return "csv"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// MaxLine is the longest record a Reader reads, terminator excluded.
// Binance frames are a few hundred bytes; a depth snapshot may reach tens of KiB.
const MaxLine = 1 << 20

var (
	// ErrLineTooLong: a line is longer than MaxLine. Next drops the line
	// without buffering it and returns this sentinel, unwrapped, once; the
	// next call goes on with the following line, so callers count it and
	// continue.
	ErrLineTooLong = errors.New("line longer than 1 MiB, dropped")
	// ErrSymbol: a CSV file name does not start with "SYMBOL-".
	ErrSymbol = errors.New("cannot derive the symbol from the file name (want SYMBOL-aggTrades-DATE.csv)")
	// ErrNoCSV: a zip archive holds no .csv file.
	ErrNoCSV = errors.New("zip archive holds no .csv file")
)

// Reader reads the records of one recorded file: plain or gzip NDJSON frames, or
// aggTrades CSV, plain, gzip or zip. One goroutine owns it.
type Reader struct {
	path   string
	format Format
	symbol string
	r      *bufio.Reader
	closer []io.Closer // closed in order by Close
	line   int
	err    error // sticky: once set, Next returns it; never ErrLineTooLong
}

// Open opens path and picks the format from its name: ".csv", ".csv.gz" and
// ".zip" (data.binance.vision's, one CSV inside) are FormatCSV, anything else
// FormatFrames, gzip-compressed when the name ends in ".gz". A CSV's symbol is the
// file name up to its first '-', upper-cased: "BTCUSDT-aggTrades-2024-01-01.csv"
// is BTCUSDT.
func Open(path string) (*Reader, error) {
	name := strings.ToLower(filepath.Base(path))
	gz := strings.HasSuffix(name, ".gz")
	inner := strings.TrimSuffix(name, ".gz")
	in := &Reader{path: path}
	isZip := !gz && strings.HasSuffix(inner, ".zip")
	if isZip || strings.HasSuffix(inner, ".csv") {
		in.format = FormatCSV
		symbol, err := symbolFromFileName(filepath.Base(path))
		if err != nil {
			return nil, fmt.Errorf("cannot open input %q: %w", path, err)
		}
		in.symbol = symbol
	}
	var src io.Reader
	if isZip {
		zr, err := zip.OpenReader(path)
		if err != nil {
			return nil, fmt.Errorf("cannot open input %q: %w", path, err)
		}
		var entry *zip.File
		for _, f := range zr.File {
			if strings.HasSuffix(strings.ToLower(f.Name), ".csv") {
				entry = f
				break
			}
		}
		if entry == nil {
			zr.Close()
			return nil, fmt.Errorf("cannot open input %q: %w", path, ErrNoCSV)
		}
		rc, err := entry.Open()
		if err != nil {
			zr.Close()
			return nil, fmt.Errorf("cannot open input %q: cannot open %q in it: %w", path, entry.Name, err)
		}
		in.closer = []io.Closer{rc, zr}
		src = rc
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("cannot open input %q: %w", path, err)
		}
		src = f
		in.closer = []io.Closer{f}
		if gz {
			zr, err := gzip.NewReader(f)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("cannot open input %q: %w", path, err)
			}
			src = zr
			in.closer = []io.Closer{zr, f}
		}
	}
	// Room for the longest line plus "\r\n", so ReadSlice sees every legal line whole.
	in.r = bufio.NewReaderSize(src, MaxLine+2)
	return in, nil
}

// symbolFromFileName returns the upper-cased name up to the first '-'; that
// part must be a non-empty run of letters and digits.
func symbolFromFileName(name string) (string, error) {
	dash := strings.IndexByte(name, '-')
	if dash <= 0 {
		return "", ErrSymbol
	}
	for _, c := range name[:dash] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return "", ErrSymbol
		}
	}
	return strings.ToUpper(name[:dash]), nil
}

// Format is the record layout.
func (in *Reader) Format() Format { return in.format }

// Symbol is the CSV's symbol, derived from its file name; "" for frames.
func (in *Reader) Symbol() string { return in.symbol }

// Path is the path Open was given.
func (in *Reader) Path() string { return in.path }

// Line is the 1-based line number of the record Next returned last, or of the
// line that made it fail.
func (in *Reader) Line() int { return in.line }

// Next returns the next record, or io.EOF after the last. For FormatFrames a
// record is the line from its first '{' to its end (a prefix such as a capture
// timestamp is dropped; lines without '{' are skipped); for FormatCSV it is the
// raw row. Line terminators ("\n" or "\r\n") are dropped and empty lines skipped.
//
// The record aliases Reader's buffer: it is valid until the next call to Next or
// Close. Next allocates nothing in steady state.
//
// A line longer than MaxLine is read past without being buffered and makes Next
// return (nil, ErrLineTooLong) once, with Line() on that line; the next call
// returns the following line. Any other error (a read or decompression
// failure, os.ErrClosed after Close) is sticky: Next keeps returning it. Errors
// carry neither the path nor the line number: callers add Path() and Line().
func (in *Reader) Next() ([]byte, error) {
	if in.err != nil {
		return nil, in.err
	}
	for {
		line, err := in.r.ReadSlice('\n')
		if len(line) > 0 || err == nil {
			in.line++
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, in.skipLine()
		}
		if err != nil && !errors.Is(err, io.EOF) {
			in.err = err // unwrapped: the caller's "cannot read PATH line N" says the rest
			return nil, err
		}
		eof := err != nil
		line = bytes.TrimSuffix(line, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > MaxLine { // MaxLine+1 bytes before "\n": fit the buffer, still too long
			return nil, ErrLineTooLong
		}
		if in.format == FormatFrames {
			if brace := bytes.IndexByte(line, '{'); brace >= 0 {
				line = line[brace:]
			} else {
				line = nil
			}
		}
		if len(line) > 0 {
			return line, nil
		}
		if eof {
			in.err = io.EOF
			return nil, io.EOF
		}
	}
}

// skipLine discards the rest of a line that filled the buffer, one buffer at a
// time, and returns ErrLineTooLong, or the read error that cut it short.
// Filling a MaxLine+2 buffer without a '\n' means more than MaxLine bytes
// before any "\r\n", so the line is too long whatever its terminator.
func (in *Reader) skipLine() error {
	for {
		_, err := in.r.ReadSlice('\n')
		switch {
		case err == nil:
			return ErrLineTooLong
		case errors.Is(err, io.EOF):
			in.err = io.EOF // the over-long line was the last one
			return ErrLineTooLong
		case errors.Is(err, bufio.ErrBufferFull):
		default:
			in.err = err
			return err
		}
	}
}

// Close releases the file; the last record becomes invalid.
func (in *Reader) Close() error {
	var first error
	for _, c := range in.closer {
		if err := c.Close(); err != nil && first == nil {
			first = fmt.Errorf("cannot close input %q: %w", in.path, err)
		}
	}
	in.closer = nil
	if in.err == nil {
		in.err = os.ErrClosed
	}
	return first
}
