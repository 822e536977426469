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
	"time"
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
	// ErrName: the file name says neither format (see Open).
	ErrName = errors.New("cannot tell the format from the file name: want .csv, .csv.gz or .zip " +
		"(aggTrades CSV), or .ndjson, .jsonl, .json or .log, plain or .gz (recorded WebSocket frames)")
	// ErrContent: the first bytes of a file contradict the format its name says.
	ErrContent = errors.New("content does not match the format the file name says")
	// ErrDirectory: the path names a directory.
	ErrDirectory = errors.New("is a directory, not a file")
)

// sniffLen is how much of a file Open looks at to check that its content is in the
// format its name says.
const sniffLen = 64 << 10

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

// Open opens path and picks the format from its name: ".csv", ".csv.gz" and ".zip"
// (data.binance.vision's, one CSV inside) are FormatCSV; ".ndjson", ".jsonl",
// ".json" and ".log", plain or ".gz", are FormatFrames. Any other name is ErrName:
// the name is the one rule a user can read, and a CSV named ".txt" read as frames
// would yield nothing without a word. Open then checks the first bytes against
// the format (ErrContent): a CSV's first line must not hold a '{', and a frame
// capture must hold a '{' within its first 64 KiB, so a file renamed to the wrong
// format fails here instead of replaying as nothing. An empty file passes. A CSV's
// symbol is the file name up to its first '-', upper-cased:
// "BTCUSDT-aggTrades-2024-01-01.csv" is BTCUSDT.
func Open(path string) (*Reader, error) {
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("cannot open input %q: %w", path, err)
	} else if fi.IsDir() {
		return nil, fmt.Errorf("cannot open input %q: %w", path, ErrDirectory)
	}
	format, gz, isZip, err := formatFromName(filepath.Base(path))
	if err != nil {
		return nil, fmt.Errorf("cannot open input %q: %w", path, err)
	}
	in := &Reader{path: path, format: format}
	if format == FormatCSV {
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
	if err := in.sniff(); err != nil {
		in.Close()
		return nil, fmt.Errorf("cannot open input %q: %w", path, err)
	}
	return in, nil
}

// formatFromName returns the format a file name says, and whether the file is
// gzip or zip compressed.
func formatFromName(name string) (format Format, gz, isZip bool, err error) {
	name = strings.ToLower(name)
	if strings.HasSuffix(name, ".zip") {
		return FormatCSV, false, true, nil
	}
	inner, gz := strings.CutSuffix(name, ".gz")
	switch filepath.Ext(inner) {
	case ".csv":
		return FormatCSV, gz, false, nil
	case ".ndjson", ".jsonl", ".json", ".log":
		return FormatFrames, gz, false, nil
	}
	return 0, false, false, ErrName
}

// sniff peeks at the start of the file and returns ErrContent when it contradicts
// the format. A read error is left for Next to report with its line number: the
// decompressors keep returning it.
func (in *Reader) sniff() error {
	head, _ := in.r.Peek(sniffLen)
	switch in.format {
	case FormatCSV:
		line := head
		for len(line) > 0 {
			var rest []byte
			if nl := bytes.IndexByte(line, '\n'); nl >= 0 {
				line, rest = line[:nl], line[nl+1:]
			}
			if t := bytes.TrimSpace(line); len(t) > 0 {
				if bytes.IndexByte(t, '{') >= 0 || bytes.IndexByte(t, ',') < 0 {
					return fmt.Errorf("first line %.60q is not an aggTrades CSV row or header: %w", t, ErrContent)
				}
				return nil
			}
			line = rest
		}
	case FormatFrames:
		if len(bytes.TrimSpace(head)) > 0 && bytes.IndexByte(head, '{') < 0 {
			return fmt.Errorf("no JSON frame ('{') in its first %d bytes, which start %.60q: %w",
				len(head), bytes.TrimSpace(head), ErrContent)
		}
	}
	return nil
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

// FileDate returns the date a data.binance.vision file name carries:
// "2025-01-02" for a daily file such as BTCUSDT-aggTrades-2025-01-02.zip,
// "2025-01" for a monthly one (BTCUSDT-aggTrades-2025-01.zip), and false when
// the name (extensions .csv, .zip and .gz aside) does not end in such a date.
// Dates in this form sort as strings in time order, a month before its days.
func FileDate(path string) (string, bool) {
	name := strings.ToLower(filepath.Base(path))
	name = strings.TrimSuffix(name, ".gz")
	name = strings.TrimSuffix(name, ".zip")
	name = strings.TrimSuffix(name, ".csv")
	for _, layout := range []string{"2006-01-02", "2006-01"} {
		n := len(layout)
		if len(name) <= n || name[len(name)-n-1] != '-' {
			continue
		}
		date := name[len(name)-n:]
		if _, err := time.Parse(layout, date); err == nil {
			return date, true
		}
	}
	return "", false
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
