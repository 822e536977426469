package main

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// listFlag is a flag that may be repeated and takes comma-separated lists.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	*l = append(*l, splitTrimmed(s)...)
	return nil
}

// runVerify compares stored klines with Binance's official kline files, field by
// field and exactly, and fails on any mismatch or missing kline.
func runVerify(ctx context.Context, args []string) error {
	return verify(ctx, args, os.Stdout)
}

// verifyOptions are verify's flags.
type verifyOptions struct {
	db, market, symbol, interval string
	allowOpen                    bool
	files                        []string
}

func verify(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var o verifyOptions
	fs.StringVar(&o.db, "db", store.DefaultConfig().Path, "the kline database")
	fs.StringVar(&o.market, "market", "futures", "futures or spot")
	var files listFlag
	fs.Var(&files, "official", "Binance kline files (data.binance.vision CSV or ZIP, header or not, ms or us times; or OHLCV CSV): comma-separated or repeated")
	fs.StringVar(&o.symbol, "symbol", "", "the symbol of every file (default: from each file name, SYMBOL-INTERVAL-...)")
	fs.StringVar(&o.interval, "interval", "", "the interval of every file (default: from each file name)")
	fs.BoolVar(&o.allowOpen, "allow-open", false, "klines the store holds still open are reported but do not fail (a file downloaded while its last kline was open)")
	setUsage(fs, "klagg verify --official FILE[,FILE...] [--db FILE] [--market M] [--symbol S --interval IV] [--allow-open]",
		"Compares every kline of Binance's official files with the stored one, field by field,\n"+
			"decimals as exact numbers (0.0163 equals 0.01630000). Prints every mismatch and exits\n"+
			"non-zero on any mismatch or missing kline.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(files) == 0 {
		return usageErrorf("--official is required")
	}
	o.files = files
	cfg := store.DefaultConfig()
	cfg.Path = o.db
	d, err := store.OpenReadOnly(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	var total verifyResult
	for _, path := range o.files {
		r, err := verifyFile(ctx, d, &o, path, out)
		if err != nil {
			return err
		}
		total.add(r)
	}
	fmt.Fprintf(out, "total: %d klines, %d equal, %d mismatched, %d missing, %d open in the store\n",
		total.rows, total.equal, total.mismatched, total.missing, total.open)
	bad := total.mismatched + total.missing
	if !o.allowOpen {
		bad += total.open
	}
	if bad > 0 {
		return fmt.Errorf("%d mismatched, %d missing, %d open klines (see above)", total.mismatched, total.missing, total.open)
	}
	return nil
}

type verifyResult struct{ rows, equal, mismatched, missing, open int }

func (r *verifyResult) add(o verifyResult) {
	r.rows += o.rows
	r.equal += o.equal
	r.mismatched += o.mismatched
	r.missing += o.missing
	r.open += o.open
}

// officialRow is one kline of an official file: open time in ms and the columns the
// file has, as written.
type officialRow struct {
	line     int
	openTime int64
	fields   map[string]string
}

// klineFields are the comparable columns of data.binance.vision's kline layout, in
// order (the last, ignore, is not compared).
var klineFields = []string{"open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume"}

func verifyFile(ctx context.Context, d *store.DB, o *verifyOptions, path string, out io.Writer) (verifyResult, error) {
	var res verifyResult
	symbol, interval := o.symbol, o.interval
	if symbol == "" || interval == "" {
		s, iv, ok := seriesFromName(path)
		if !ok {
			return res, usageErrorf("cannot tell the symbol and interval of %s from its name (SYMBOL-INTERVAL-...): give --symbol and --interval", path)
		}
		if symbol == "" {
			symbol = s
		}
		if interval == "" {
			interval = iv
		}
	}
	symbol = strings.ToUpper(symbol)
	rows, err := readOfficial(path)
	if err != nil {
		return res, err
	}
	if len(rows) == 0 {
		return res, fmt.Errorf("cannot verify %s: no klines in it", path)
	}
	first, last := rows[0].openTime, rows[0].openTime
	for _, r := range rows {
		first, last = min(first, r.openTime), max(last, r.openTime)
	}
	stored := map[int64]shard.Kline{}
	for next := first; next <= last; {
		ks, err := d.Klines(ctx, o.market, symbol, interval, next, last, store.MaxLimit)
		if err != nil {
			return res, err
		}
		for _, k := range ks {
			stored[k.OpenTime] = k
		}
		if len(ks) < store.MaxLimit {
			break
		}
		next = ks[len(ks)-1].OpenTime + 1
	}
	name := filepath.Base(path)
	for _, r := range rows {
		res.rows++
		when := time.UnixMilli(r.openTime).UTC().Format(time.RFC3339)
		k, ok := stored[r.openTime]
		switch {
		case !ok:
			res.missing++
			fmt.Fprintf(out, "%s line %d: %s %s %s (%d): missing from the store\n", name, r.line, symbol, interval, when, r.openTime)
			continue
		case !k.Closed:
			res.open++
			fmt.Fprintf(out, "%s line %d: %s %s %s (%d): still open in the store, not compared\n", name, r.line, symbol, interval, when, r.openTime)
			continue
		}
		if diffs := compareKline(&k, r.fields); len(diffs) > 0 {
			res.mismatched++
			note := ""
			if q := k.Flags & shard.QualityFlags; q != 0 {
				note = " (stored kline flagged " + q.String() + ")"
			}
			fmt.Fprintf(out, "%s line %d: %s %s %s (%d): %s%s\n", name, r.line, symbol, interval, when, r.openTime, strings.Join(diffs, "; "), note)
			continue
		}
		res.equal++
	}
	fmt.Fprintf(out, "%s: %s %s, %d klines: %d equal, %d mismatched, %d missing, %d open in the store\n",
		name, symbol, interval, res.rows, res.equal, res.mismatched, res.missing, res.open)
	return res, nil
}

// compareKline compares the fields the official row has with k's, exactly.
func compareKline(k *shard.Kline, fields map[string]string) []string {
	ours := map[string]string{
		"open":                   k.Open.String(),
		"high":                   k.High.String(),
		"low":                    k.Low.String(),
		"close":                  k.Close.String(),
		"volume":                 string(k.Volume.AppendDecimal(nil, parse.Scale)),
		"close_time":             strconv.FormatInt(k.CloseTime, 10),
		"quote_volume":           string(k.QuoteVolume.AppendDecimal(nil, 2*parse.Scale)),
		"count":                  strconv.FormatInt(k.Count, 10),
		"taker_buy_volume":       string(k.TakerBuyVolume.AppendDecimal(nil, parse.Scale)),
		"taker_buy_quote_volume": string(k.TakerBuyQuoteVolume.AppendDecimal(nil, 2*parse.Scale)),
	}
	var diffs []string
	for _, name := range klineFields[1:] {
		theirs, ok := fields[name]
		if !ok {
			continue
		}
		if !sameNumber(ours[name], theirs) {
			diffs = append(diffs, fmt.Sprintf("%s store %s official %s", name, ours[name], theirs))
		}
	}
	return diffs
}

// sameNumber compares two decimals exactly ("0.0163" = "0.01630000" = "1.63e-2").
func sameNumber(a, b string) bool {
	if a == b {
		return true
	}
	x, ok1 := new(big.Rat).SetString(a)
	y, ok2 := new(big.Rat).SetString(b)
	return ok1 && ok2 && x.Cmp(y) == 0
}

// seriesFromName reads SYMBOL and INTERVAL from a data.binance.vision file name,
// SYMBOL-INTERVAL-YYYY-MM-DD.csv (or .zip, or SYMBOL-INTERVAL-anything).
func seriesFromName(path string) (symbol, interval string, ok bool) {
	parts := strings.Split(filepath.Base(path), "-")
	if len(parts) < 2 || parts[0] == "" {
		return "", "", false
	}
	iv := strings.TrimSuffix(strings.TrimSuffix(parts[1], ".csv"), ".zip")
	if _, err := shard.ParseInterval(iv); err != nil {
		return "", "", false
	}
	return parts[0], iv, true
}

// readOfficial reads a kline file: data.binance.vision's 12 columns with or without
// a header (or any columns a header names), or a 6-column OHLCV file. Times in
// microseconds (spot files from 2025) are turned into milliseconds.
func readOfficial(path string) ([]officialRow, error) {
	data, err := readCSVFile(path)
	if err != nil {
		return nil, err
	}
	var cols []string
	var rows []officialRow
	for i, line := range bytes.Split(data, []byte{'\n'}) {
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		fields := strings.Split(string(line), ",")
		if cols == nil {
			if _, err := strconv.ParseInt(strings.TrimSpace(fields[0]), 10, 64); err != nil { // a header
				for _, f := range fields {
					cols = append(cols, strings.ToLower(strings.TrimSpace(f)))
				}
				if len(cols) == 0 || cols[0] != "open_time" {
					return nil, fmt.Errorf("cannot read %s: the header starts with %q, want open_time", path, fields[0])
				}
				continue
			}
			switch {
			case len(fields) >= len(klineFields):
				cols = klineFields
			case len(fields) == 6:
				cols = klineFields[:6]
			default:
				return nil, fmt.Errorf("cannot read %s line %d: %d columns, want data.binance.vision's 12 or OHLCV's 6", path, i+1, len(fields))
			}
		}
		if len(fields) < len(cols) {
			return nil, fmt.Errorf("cannot read %s line %d: %d columns, the file has %d", path, i+1, len(fields), len(cols))
		}
		r := officialRow{line: i + 1, fields: map[string]string{}}
		for j, c := range cols {
			if j < len(fields) && c != "ignore" {
				r.fields[c] = strings.TrimSpace(fields[j])
			}
		}
		if r.openTime, err = strconv.ParseInt(r.fields["open_time"], 10, 64); err != nil {
			return nil, fmt.Errorf("cannot read %s line %d: open time %q", path, i+1, r.fields["open_time"])
		}
		if r.openTime > 1e14 { // microseconds
			r.openTime /= 1000
			if ct, err := strconv.ParseInt(r.fields["close_time"], 10, 64); err == nil {
				r.fields["close_time"] = strconv.FormatInt(ct/1000, 10)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// readCSVFile returns a CSV file's bytes, or those of the first CSV inside a ZIP.
func readCSVFile(path string) ([]byte, error) {
	if !strings.HasSuffix(strings.ToLower(path), ".zip") {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("cannot read official kline file: %w", err)
		}
		return data, nil
	}
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open official kline file: %w", err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		if !strings.HasSuffix(strings.ToLower(f.Name), ".csv") {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("cannot read %s in %s: %w", f.Name, path, err)
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s in %s: %w", f.Name, path, err)
		}
		return data, nil
	}
	return nil, errors.New("cannot read " + path + ": no CSV file inside")
}
