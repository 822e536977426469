package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// exportPage is how many klines export reads from the database at a time.
const exportPage = 10_000

// runExport writes one series of stored klines to stdout, as data.binance.vision's
// kline CSV or as Binance's REST klines JSON.
func runExport(ctx context.Context, args []string) error {
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	err := export(ctx, args, w)
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("cannot write klines: %w", ferr)
	}
	return err
}

func export(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	db := fs.String("db", store.DefaultConfig().Path, "the kline database")
	market := fs.String("market", "futures", "futures or spot")
	symbol := fs.String("symbol", "", "the symbol, e.g. BTCUSDT (required)")
	interval := fs.String("interval", "", "the interval, e.g. 1m (required)")
	from := fs.String("from", "", "first open time: Unix milliseconds or RFC 3339 (default: the oldest stored)")
	to := fs.String("to", "", "last open time: Unix milliseconds or RFC 3339 (default: the newest stored)")
	format := fs.String("format", "csv", "csv (data.binance.vision's layout, header first) or json (Binance's REST klines arrays)")
	header := fs.Bool("header", true, "csv: write the header line first")
	open := fs.Bool("open", false, "also write the open (not yet closed) kline, if stored")
	setUsage(fs, "klagg export --symbol SYMBOL --interval IV [--db FILE] [--market M] [--from T] [--to T] [--format csv|json]",
		"Writes one series of stored klines to stdout, oldest first. CSV rows are the files'\n"+
			"(shard.CSVHeader, exact decimals, quality flags in the last column); JSON is an array\n"+
			"of Binance REST kline arrays ([openTime, \"open\", ..., \"0\"]), decimals with 8 places.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *symbol == "" || *interval == "" {
		return usageErrorf("--symbol and --interval are required")
	}
	if *format != "csv" && *format != "json" {
		return usageErrorf("--format %q: want csv or json", *format)
	}
	start, end := int64(-1), int64(-1)
	var err error
	if *from != "" {
		if start, err = parseTime(*from); err != nil {
			return usageErrorf("--from: %v", err)
		}
	}
	if *to != "" {
		if end, err = parseTime(*to); err != nil {
			return usageErrorf("--to: %v", err)
		}
	}
	cfg := store.DefaultConfig()
	cfg.Path = *db
	d, err := store.OpenReadOnly(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	sym := strings.ToUpper(*symbol)
	var buf []byte
	if *format == "csv" && *header {
		buf = append(buf, shard.CSVHeader...)
		buf = append(buf, '\n')
	}
	if *format == "json" {
		buf = append(buf, '[')
	}
	n := 0
	next := max(start, 0) // open times are Unix ms, never negative
	for {
		ks, err := d.Klines(ctx, *market, sym, *interval, next, end, exportPage)
		if err != nil {
			return err
		}
		for i := range ks {
			k := &ks[i]
			if !k.Closed && !*open {
				continue
			}
			if *format == "csv" {
				buf = k.AppendCSV(buf)
				buf = append(buf, '\n')
			} else {
				if n > 0 {
					buf = append(buf, ',')
				}
				buf = appendRESTKline(buf, k)
			}
			n++
		}
		if _, err := out.Write(buf); err != nil {
			return fmt.Errorf("cannot write klines: %w", err)
		}
		buf = buf[:0]
		if len(ks) < exportPage {
			break
		}
		next = ks[len(ks)-1].OpenTime + 1
	}
	if *format == "json" {
		if _, err := out.Write([]byte("]\n")); err != nil {
			return fmt.Errorf("cannot write klines: %w", err)
		}
	}
	if n == 0 {
		fmt.Fprintf(os.Stderr, "klagg export: no %s %s %s klines in %s in that range\n", *market, sym, *interval, *db)
	}
	return nil
}

// parseTime parses Unix milliseconds or an RFC 3339 time.
func parseTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("cannot parse time %q: want Unix milliseconds or RFC 3339 (2024-01-01T00:00:00Z)", s)
	}
	return t.UnixMilli(), nil
}

// appendRESTKline appends k as Binance's REST klines return one: [openTime, "open",
// "high", "low", "close", "volume", closeTime, "quoteVolume", count, "takerBuyBase",
// "takerBuyQuote", "0"], decimals with at least 8 places as Binance prints them
// (more when the exact value has more, never rounded). The last field is "0" as
// Binance's, or the kline's quality flags as AppendCSV writes them.
func appendRESTKline(dst []byte, k *shard.Kline) []byte {
	str := func(dst []byte, f func([]byte) []byte) []byte {
		dst = append(dst, '"')
		start := len(dst)
		dst = f(dst)
		dst = padDecimal(dst, start)
		return append(dst, '"', ',')
	}
	dst = append(dst, '[')
	dst = strconv.AppendInt(dst, k.OpenTime, 10)
	dst = append(dst, ',')
	for _, p := range [...]parse.Decimal{k.Open, k.High, k.Low, k.Close} {
		dst = str(dst, func(b []byte) []byte { return parse.AppendDecimal(b, p) })
	}
	dst = str(dst, func(b []byte) []byte { return k.Volume.AppendDecimal(b, parse.Scale) })
	dst = strconv.AppendInt(dst, k.CloseTime, 10)
	dst = append(dst, ',')
	dst = str(dst, func(b []byte) []byte { return k.QuoteVolume.AppendDecimal(b, 2*parse.Scale) })
	dst = strconv.AppendInt(dst, k.Count, 10)
	dst = append(dst, ',')
	dst = str(dst, func(b []byte) []byte { return k.TakerBuyVolume.AppendDecimal(b, parse.Scale) })
	dst = str(dst, func(b []byte) []byte { return k.TakerBuyQuoteVolume.AppendDecimal(b, 2*parse.Scale) })
	dst = append(dst, '"')
	if q := k.Flags & shard.QualityFlags; q != 0 {
		dst = append(dst, q.String()...)
	} else {
		dst = append(dst, '0')
	}
	return append(dst, '"', ']')
}

// padDecimal pads the decimal in dst[start:] with zeros to 8 fractional digits.
func padDecimal(dst []byte, start int) []byte {
	dot := -1
	for i := start; i < len(dst); i++ {
		if dst[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 0 {
		dst = append(dst, '.')
		dot = len(dst) - 1
	}
	for len(dst)-dot-1 < parse.Scale {
		dst = append(dst, '0')
	}
	return dst
}
