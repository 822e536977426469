package record

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeInput writes content to dir/name, compressed as the name says.
func writeInput(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	var data []byte
	switch lower := strings.ToLower(name); {
	case strings.HasSuffix(lower, ".gz"):
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write([]byte(content))
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		data = buf.Bytes()
	case strings.HasSuffix(lower, ".zip"):
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, err := zw.Create(strings.TrimSuffix(name, ".zip") + ".csv")
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(content))
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		data = buf.Bytes()
	default:
		data = []byte(content)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type inputRecord struct {
	text string
	line int
}

// readAll returns every record with its line number, and the error that ended it.
func readAll(t *testing.T, path string) (*Reader, []inputRecord, error) {
	t.Helper()
	in, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { in.Close() })
	var recs []inputRecord
	for {
		rec, err := in.Next()
		if err != nil {
			return in, recs, err
		}
		recs = append(recs, inputRecord{string(rec), in.Line()})
	}
}

const (
	frameA = `{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"a":1,"s":"BTCUSDT","p":"1","q":"1","f":1,"l":1,"T":1,"m":true}}`
	frameB = `{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}}`
	rowA   = "13519807,0.00141342,23.00000000,15373518,15373518,1570752011620,True,True"
	rowB   = "13519808,0.00141266,54.00000000,15373519,15373519,1570752011620,True,True"
)

func TestInputFormats(t *testing.T) {
	frames := frameA + "\n\n" + "2024-01-01T00:00:00.123Z " + frameB + "\r\nno brace here\n" + frameA // no final newline
	wantFrames := []inputRecord{{frameA, 1}, {frameB, 3}, {frameA, 5}}
	rows := rowA + "\r\n\r\n" + rowB + "\r\n"
	wantRows := []inputRecord{{rowA, 1}, {rowB, 3}}
	for _, tc := range []struct {
		name, content string
		format        Format
		symbol        string
		want          []inputRecord
	}{
		{"capture.ndjson", frames, FormatFrames, "", wantFrames},
		{"capture.log", frames, FormatFrames, "", wantFrames},
		{"capture.ndjson.gz", frames, FormatFrames, "", wantFrames},
		{"capture.JSONL.GZ", frames, FormatFrames, "", wantFrames},
		{"XRPETH-aggTrades-2019-10-11.csv", rows, FormatCSV, "XRPETH", wantRows},
		{"btcusdt-aggTrades-2024-01-01.csv", rowA + "\n" + rowB + "\n", FormatCSV, "BTCUSDT", []inputRecord{{rowA, 1}, {rowB, 2}}},
		{"ETHUSDT-aggTrades-2024-01-01.csv.gz", rows, FormatCSV, "ETHUSDT", wantRows},
		{"BNBUSDT-aggTrades-2024-01.zip", rows, FormatCSV, "BNBUSDT", wantRows},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			path := writeInput(t, t.TempDir(), tc.name, tc.content)
			in, got, err := readAll(t, path)
			if err != io.EOF {
				t.Fatalf("ended with %v, want io.EOF", err)
			}
			if in.Format() != tc.format || in.Symbol() != tc.symbol || in.Path() != path {
				t.Fatalf("format %v symbol %q path %q, want %v %q %q", in.Format(), in.Symbol(), in.Path(), tc.format, tc.symbol, path)
			}
			if len(got) != len(want) {
				t.Fatalf("records %+v, want %+v", got, want)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("record %d = %+v, want %+v", i, got[i], want[i])
				}
			}
			if _, err := in.Next(); err != io.EOF {
				t.Fatalf("Next after EOF = %v", err)
			}
			if err := in.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

func TestInputSymbol(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"BTCUSDT-aggTrades-2024-01-01.csv", "BTCUSDT"},
		{"1000pepeusdt-aggTrades-2024-01-01.csv", "1000PEPEUSDT"},
		{"XRPETH-x.zip", "XRPETH"},
		{"BTCUSDT.csv", ""},
		{"-aggTrades.csv", ""},
		{"BTC_USDT-aggTrades.csv", ""},
	} {
		got, err := symbolFromFileName(tc.name)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("symbolFromFileName(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
		if tc.want == "" && !errors.Is(err, ErrSymbol) {
			t.Errorf("symbolFromFileName(%q) error %v is not ErrSymbol", tc.name, err)
		}
	}
	path := writeInput(t, t.TempDir(), "aggTrades.csv", rowA)
	if _, err := Open(path); !errors.Is(err, ErrSymbol) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a CSV without a symbol: %v", err)
	}
}

// TestInputNames checks that a name saying neither format is refused, before the
// file is read: a CSV named .txt used to replay as zero frames and exit 0.
func TestInputNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"XRPETH-aggTrades-2019-10-11.txt", "capture", "capture.gz", "capture.txt.gz", "BTCUSDT-aggTrades-2024-01-01.csv.bak", "frames.ndjson.zst"} {
		path := writeInput(t, dir, name, rowA+"\n")
		if in, err := Open(path); !errors.Is(err, ErrName) || !strings.Contains(err.Error(), path) {
			if in != nil {
				in.Close()
			}
			t.Errorf("Open(%q) = %v, want ErrName naming the file", name, err)
		}
	}
	for name, want := range map[string]Format{
		"a.ndjson": FormatFrames, "a.JSONL": FormatFrames, "a.json.gz": FormatFrames, "a.log": FormatFrames,
		"X-aggTrades-2024-01-01.csv": FormatCSV, "X-aggTrades-2024-01-01.CSV.GZ": FormatCSV, "X-aggTrades-2024-01.zip": FormatCSV,
	} {
		content := frameA + "\n"
		if want == FormatCSV {
			content = rowA + "\n"
		}
		in, err := Open(writeInput(t, dir, name, content))
		if err != nil {
			t.Errorf("Open(%q): %v", name, err)
			continue
		}
		if in.Format() != want {
			t.Errorf("Open(%q): format %v, want %v", name, in.Format(), want)
		}
		in.Close()
	}
}

// TestInputContent checks that a file whose content contradicts its name fails in
// Open with ErrContent, and that an empty file or a header line passes.
func TestInputContent(t *testing.T) {
	dir := t.TempDir()
	header := "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
	for _, tc := range []struct {
		name, content string
		ok            bool
	}{
		{"csv-as-frames.ndjson", rowA + "\n" + rowB + "\n", false},
		{"csv-as-frames.ndjson.gz", rowA + "\n", false},
		{"BTCUSDT-frames-as-csv.csv", frameA + "\n", false},
		{"BTCUSDT-frames-as-csv.zip", "\n\r\n" + frameA + "\n", false},
		{"BTCUSDT-no-commas.csv", "hello\n", false},
		{"empty.ndjson", "", true},
		{"BTCUSDT-empty.csv", "\n", true},
		{"BTCUSDT-header.csv", header + rowA + "\n", true},
		{"BTCUSDT-blank-first.csv", "\r\n\n" + rowA + "\n", true},
		{"comment-first.log", "# captured 2024-01-01\n" + frameA + "\n", true},
	} {
		path := writeInput(t, dir, tc.name, tc.content)
		in, err := Open(path)
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else {
				in.Close()
			}
			continue
		}
		if !errors.Is(err, ErrContent) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: Open = %v, want ErrContent naming the file", tc.name, err)
		}
		if in != nil {
			in.Close()
		}
	}
}

// TestInputDirectory checks that a directory fails in Open, whatever its name.
func TestInputDirectory(t *testing.T) {
	for _, name := range []string{"captures.ndjson", "BTCUSDT-aggTrades-2024-01-01.csv", "BTCUSDT-aggTrades-2024-01-01.zip"} {
		path := filepath.Join(t.TempDir(), name)
		if err := os.Mkdir(path, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path); !errors.Is(err, ErrDirectory) || !strings.Contains(err.Error(), path) {
			t.Errorf("Open(directory %s) = %v, want ErrDirectory", name, err)
		}
	}
}

func TestFileDate(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"BTCUSDT-aggTrades-2025-01-02.zip", "2025-01-02"},
		{"/data/spot/BTCUSDT-aggTrades-2025-01-02.csv", "2025-01-02"},
		{"btcusdt-aggtrades-2025-01-02.CSV.GZ", "2025-01-02"},
		{"BTCUSDT-aggTrades-2025-01.zip", "2025-01"},
		{"BTCUSDT-aggTrades-2025-13-01.csv", ""},
		{"BTCUSDT-aggTrades-2025-02-30.csv", ""},
		{"BTCUSDT-aggTrades.csv", ""},
		{"BTCUSDT-part2.csv", ""},
		{"2025-01-02.csv", ""},
		{"BTCUSDT-aggTrades-20250102.csv", ""},
	} {
		got, ok := FileDate(tc.name)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("FileDate(%q) = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
	if a, _ := FileDate("X-aggTrades-2025-01.zip"); !(a < "2025-01-01") {
		t.Errorf("a month does not sort before its first day")
	}
}

func TestInputErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.ndjson")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := writeInput(t, dir, "BTCUSDT-aggTrades-2024-01-01.zip.tmp", "not a zip")
	zipPath := filepath.Join(dir, "BTCUSDT-aggTrades-2024-01-01.zip")
	if err := os.Rename(bad, zipPath); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(zipPath); err == nil || !strings.Contains(err.Error(), "cannot open input") {
		t.Errorf("bad zip: %v", err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("README.txt")
	w.Write([]byte("hello"))
	zw.Close()
	noCSV := filepath.Join(dir, "ETHUSDT-aggTrades-2024-01-01.zip")
	if err := os.WriteFile(noCSV, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(noCSV); !errors.Is(err, ErrNoCSV) {
		t.Errorf("zip without csv: %v", err)
	}
	notGzip := writeInput(t, dir, "capture.ndjson.gz.tmp", frameA)
	if err := os.Rename(notGzip, filepath.Join(dir, "capture.ndjson.gz")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(dir, "capture.ndjson.gz")); !errors.Is(err, gzip.ErrHeader) {
		t.Errorf("bad gzip: %v", err)
	}
	// A gzip stream cut short fails while reading, not with a silent EOF.
	var gzBuf bytes.Buffer
	gw := gzip.NewWriter(&gzBuf)
	gw.Write([]byte(strings.Repeat(frameA+"\n", 200)))
	gw.Close()
	cut := filepath.Join(dir, "cut.ndjson.gz")
	if err := os.WriteFile(cut, gzBuf.Bytes()[:gzBuf.Len()-12], 0o644); err != nil {
		t.Fatal(err)
	}
	in, _, err := readAll(t, cut)
	if err == io.EOF || !errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "line") {
		t.Errorf("truncated gzip ended with %v", err)
	}
	if _, again := in.Next(); again != err {
		t.Errorf("read error is not sticky: %v, then %v", err, again)
	}
	in.Close()
	if _, err := in.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Next after Close replaced the read error: %v", err)
	}
	closed, err := Open(writeInput(t, dir, "closed.ndjson", frameA))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if _, err := closed.Next(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Next after Close: %v", err)
	}
}

func TestInputLongLines(t *testing.T) {
	dir := t.TempDir()
	// The longest legal line passes, terminated by "\r\n" or by the end of file.
	longest := "{" + strings.Repeat("x", MaxLine-1)
	path := writeInput(t, dir, "long.ndjson", frameA+"\n"+longest+"\r\n"+longest)
	_, got, err := readAll(t, path)
	if err != io.EOF || len(got) != 3 || got[1].text != longest || got[2].text != longest || got[2].line != 3 {
		t.Fatalf("longest legal lines: %d records, %v", len(got), err)
	}
	twoMiB := "{" + strings.Repeat("y", 2<<20)
	type step struct {
		text string // "" for ErrLineTooLong
		line int
	}
	for _, tc := range []struct {
		name, content string
		want          []step
	}{
		// One byte too long: fits bufio's buffer, dropped after reading.
		{"maxline+1.ndjson", frameA + "\n" + longest + "y\n" + frameB + "\n", []step{{frameA, 1}, {"", 2}, {frameB, 3}}},
		{"maxline+1-crlf.ndjson", frameA + "\n" + longest + "y\r\n" + frameB + "\n", []step{{frameA, 1}, {"", 2}, {frameB, 3}}},
		// Twice the buffer: skipped in pieces, never held whole.
		{"2mib.ndjson", frameA + "\n" + twoMiB + "\n" + frameB + "\n\n" + frameA, []step{{frameA, 1}, {"", 2}, {frameB, 3}, {frameA, 5}}},
		{"2mib.ndjson.gz", twoMiB + "\r\n" + frameB + "\n", []step{{"", 1}, {frameB, 2}}},
		{"2mib-twice.ndjson", twoMiB + "\n" + twoMiB + "\n" + frameB, []step{{"", 1}, {"", 2}, {frameB, 3}}},
		{"2mib-last.ndjson", frameA + "\n" + twoMiB, []step{{frameA, 1}, {"", 2}}},
		{"BTCUSDT-aggTrades-2024-01-01.csv", rowA + "\n" + strings.Repeat("9", 2<<20) + "\n" + rowB + "\n", []step{{rowA, 1}, {"", 2}, {rowB, 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := Open(writeInput(t, dir, tc.name, tc.content))
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			for i, want := range tc.want {
				rec, err := in.Next()
				if want.text == "" {
					if err != ErrLineTooLong || rec != nil {
						t.Fatalf("step %d: (%.20q, %v), want (nil, ErrLineTooLong) unwrapped", i, rec, err)
					}
				} else if err != nil || string(rec) != want.text {
					t.Fatalf("step %d: (%.20q, %v), want %.20q", i, rec, err, want.text)
				}
				if in.Line() != want.line {
					t.Fatalf("step %d: Line() = %d, want %d", i, in.Line(), want.line)
				}
			}
			for range 2 {
				if rec, err := in.Next(); err != io.EOF {
					t.Fatalf("after the last line: (%.20q, %v), want io.EOF", rec, err)
				}
			}
		})
	}
	// The message names the fault once; callers prefix path and line.
	if msg := ErrLineTooLong.Error(); strings.Contains(msg, "cannot read") || strings.Count(msg, "line") != 1 {
		t.Errorf("ErrLineTooLong text %q", msg)
	}
	// Skipping reuses the reader's buffer: no allocation per dropped line.
	path = writeInput(t, dir, "skip.ndjson", strings.Repeat(twoMiB+"\n"+frameA+"\n", 6))
	in, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if n := testing.AllocsPerRun(5, func() {
		if _, err := in.Next(); err != ErrLineTooLong {
			t.Fatalf("Next = %v, want ErrLineTooLong", err)
		}
		if rec, err := in.Next(); err != nil || string(rec) != frameA {
			t.Fatalf("Next = %.20q, %v", rec, err)
		}
	}); n != 0 {
		t.Errorf("skipping an over-long line allocates %v times", n)
	}
}

func TestInputNextAllocs(t *testing.T) {
	content := strings.Repeat("17000000000 "+frameA+"\n", 5000)
	for _, name := range []string{"a.ndjson", "a.ndjson.gz"} {
		path := writeInput(t, t.TempDir(), name, content)
		in, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		if n := testing.AllocsPerRun(2000, func() {
			if rec, err := in.Next(); err != nil || string(rec) != frameA {
				t.Fatalf("Next = %q, %v", rec, err)
			}
		}); n != 0 {
			t.Errorf("%s: Next allocates %v times per record", name, n)
		}
	}
}

func TestInputRealData(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "data", "binance")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("real Binance data absent (%v): skipping", err)
	}
	for _, tc := range []struct {
		name    string
		records int
		first   string
		format  Format
	}{
		{"futures-ws-2021-07-22.ndjson", 1535, `{"stream":"sushiusdt@bookTicker"`, FormatFrames},
		{"XRPETH-aggTrades-2019-10-11.csv", 12477, "13519807,0.00141342,", FormatCSV},
	} {
		in, got, err := readAll(t, filepath.Join(dir, tc.name))
		if err != io.EOF {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(got) != tc.records || in.Line() != tc.records || !strings.HasPrefix(got[0].text, tc.first) ||
			in.Format() != tc.format {
			t.Fatalf("%s: %d records, last line %d, first %.40q, format %v", tc.name, len(got), in.Line(), got[0].text, in.Format())
		}
		for _, r := range got {
			if strings.ContainsAny(r.text, "\r\n") {
				t.Fatalf("%s line %d keeps its terminator", tc.name, r.line)
			}
		}
		if tc.format == FormatCSV && (in.Symbol() != "XRPETH" || !strings.HasPrefix(got[len(got)-1].text, "13532283,")) {
			t.Fatalf("%s: symbol %q, last row %q", tc.name, in.Symbol(), got[len(got)-1].text)
		}
	}
}

// BenchmarkInputNext measures reading frame lines.
//
//	go test -run '^$' -bench 'BenchmarkInputNext' -benchmem ./record/
func BenchmarkInputNext(b *testing.B) {
	content := strings.Repeat(frameA+"\n", 100_000)
	for _, name := range []string{"frames.ndjson", "frames.ndjson.gz"} {
		b.Run("file="+name, func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, name)
			data := []byte(content)
			if strings.HasSuffix(name, ".gz") {
				var buf bytes.Buffer
				zw := gzip.NewWriter(&buf)
				zw.Write(data)
				zw.Close()
				data = buf.Bytes()
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				b.Fatal(err)
			}
			in, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(frameA) + 1))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := in.Next(); err != nil {
					in.Close()
					if in, err = Open(path); err != nil {
						b.Fatal(err)
					}
				}
			}
			in.Close()
		})
	}
}
