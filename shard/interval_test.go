package shard

import (
	"errors"
	"testing"
	"time"
)

func ms(s string) int64 {
	t, err := time.Parse("2006-01-02 15:04:05.000", s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func TestParseInterval(t *testing.T) {
	f := func(s string, millis int64, months int, origin int64) {
		t.Helper()
		iv, err := ParseInterval(s)
		if err != nil {
			t.Fatalf("ParseInterval(%q): %v", s, err)
		}
		want := Interval{Name: s, Millis: millis, Months: months, Origin: origin}
		if iv != want {
			t.Fatalf("ParseInterval(%q) = %+v, want %+v", s, iv, want)
		}
	}
	f("1s", 1000, 0, 0)
	f("1m", 60_000, 0, 0)
	f("3m", 180_000, 0, 0)
	f("5m", 300_000, 0, 0)
	f("15m", 900_000, 0, 0)
	f("30m", 1_800_000, 0, 0)
	f("1h", 3_600_000, 0, 0)
	f("2h", 7_200_000, 0, 0)
	f("4h", 14_400_000, 0, 0)
	f("6h", 21_600_000, 0, 0)
	f("8h", 28_800_000, 0, 0)
	f("12h", 43_200_000, 0, 0)
	f("1d", 86_400_000, 0, 0)
	f("3d", 3*86_400_000, 0, 86_400_000)
	f("1w", 7*86_400_000, 0, 4*86_400_000)
	f("2w", 14*86_400_000, 0, 4*86_400_000)
	f("1M", 0, 1, 0)
	f("3M", 0, 3, 0)
	f("90m", 90*60_000, 0, 0)
	f("10m", 10*60_000, 0, 0)
	f("45s", 45_000, 0, 0)
	f("2d", 2*86_400_000, 0, 0)

	for _, bad := range []string{"", "m", "1", "0m", "-1m", "+1m", "01m", "1x", "1mm", "m1", "1.5m", " 1m", "1 m", "99999999999999999999s", "9999999999999w", "1S", "1D"} {
		if _, err := ParseInterval(bad); !errors.Is(err, ErrInterval) {
			t.Errorf("ParseInterval(%q) error = %v, want ErrInterval", bad, err)
		}
	}
}

func TestParseIntervals(t *testing.T) {
	ivs, err := ParseIntervals("1m, 5m,1h,1M,90m")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, iv := range ivs {
		names = append(names, iv.Name)
	}
	if got := len(names); got != 5 || names[0] != "1m" || names[1] != "5m" || names[4] != "90m" {
		t.Fatalf("names %v", names)
	}
	for _, dup := range []string{"1m,1m", "1h,60m", "1d,24h", "1M,1M", "3M,3M", "1w,1w"} {
		if _, err := ParseIntervals(dup); !errors.Is(err, ErrDuplicate) {
			t.Errorf("ParseIntervals(%q) error = %v, want ErrDuplicate", dup, err)
		}
	}
	// 7d is on the epoch grid (Thursdays), 1w on Mondays: different grids.
	if _, err := ParseIntervals("1w,7d"); err != nil {
		t.Errorf("1w,7d: %v", err)
	}
	for _, junk := range []string{"", ",", "1m,", ",1m", "1m,,5m", "1m,x", "1m;5m"} {
		if _, err := ParseIntervals(junk); !errors.Is(err, ErrInterval) {
			t.Errorf("ParseIntervals(%q) error = %v, want ErrInterval", junk, err)
		}
	}
}

func TestBinanceIntervals(t *testing.T) {
	spot, fut := BinanceIntervals(true), BinanceIntervals(false)
	if len(spot) != 16 || len(fut) != 15 || spot[0].Name != "1s" || fut[0].Name != "1m" || spot[15].Name != "1M" {
		t.Fatalf("spot %v futures %v", spot, fut)
	}
	if _, err := New(Config{Intervals: spot, Grace: 2000, History: 2}, nopEmitter{}); err != nil {
		t.Fatal(err)
	}
}

func TestIntervalTimes(t *testing.T) {
	f := func(name, at, open, close string) {
		t.Helper()
		iv, err := ParseInterval(name)
		if err != nil {
			t.Fatal(err)
		}
		tt := ms(at)
		o := iv.OpenTime(tt)
		if o != ms(open) {
			t.Errorf("%s OpenTime(%s) = %s, want %s", name, at, time.UnixMilli(o).UTC(), open)
		}
		if c := iv.CloseTime(o); c != ms(close) {
			t.Errorf("%s CloseTime(%s) = %s, want %s", name, open, time.UnixMilli(c).UTC(), close)
		}
		if n := iv.NextOpen(o); n != ms(close)+1 {
			t.Errorf("%s NextOpen(%s) = %d, want %d", name, open, n, ms(close)+1)
		}
		if p, q := iv.Period(o), iv.Period(iv.NextOpen(o)); q != p+1 || iv.Period(ms(close)) != p || iv.Period(tt) != p {
			t.Errorf("%s Period inconsistent around %s", name, at)
		}
	}
	f("1s", "2024-02-29 23:59:59.999", "2024-02-29 23:59:59.000", "2024-02-29 23:59:59.999")
	f("1m", "2024-02-29 23:59:59.999", "2024-02-29 23:59:00.000", "2024-02-29 23:59:59.999")
	f("3m", "2024-02-29 00:04:00.000", "2024-02-29 00:03:00.000", "2024-02-29 00:05:59.999")
	f("5m", "2019-10-11 00:07:00.000", "2019-10-11 00:05:00.000", "2019-10-11 00:09:59.999")
	f("15m", "2019-10-11 00:29:59.999", "2019-10-11 00:15:00.000", "2019-10-11 00:29:59.999")
	f("30m", "2019-10-11 00:30:00.000", "2019-10-11 00:30:00.000", "2019-10-11 00:59:59.999")
	f("1h", "2019-10-11 13:30:00.000", "2019-10-11 13:00:00.000", "2019-10-11 13:59:59.999")
	f("2h", "2019-10-11 13:30:00.000", "2019-10-11 12:00:00.000", "2019-10-11 13:59:59.999")
	f("4h", "2019-10-11 13:30:00.000", "2019-10-11 12:00:00.000", "2019-10-11 15:59:59.999")
	f("6h", "2019-10-11 13:30:00.000", "2019-10-11 12:00:00.000", "2019-10-11 17:59:59.999")
	f("8h", "2019-10-11 13:30:00.000", "2019-10-11 08:00:00.000", "2019-10-11 15:59:59.999")
	f("12h", "2019-10-11 13:30:00.000", "2019-10-11 12:00:00.000", "2019-10-11 23:59:59.999")
	f("1d", "2024-02-29 13:30:00.000", "2024-02-29 00:00:00.000", "2024-02-29 23:59:59.999")
	// 3d: Binance's BTCUSDT grid.
	f("3d", "2017-08-17 04:00:00.000", "2017-08-17 00:00:00.000", "2017-08-19 23:59:59.999")
	f("3d", "2026-07-01 00:00:00.000", "2026-07-01 00:00:00.000", "2026-07-03 23:59:59.999")
	f("3d", "2026-06-30 23:59:59.999", "2026-06-28 00:00:00.000", "2026-06-30 23:59:59.999")
	// Weeks open on Monday.
	f("1w", "2024-01-01 00:00:00.000", "2024-01-01 00:00:00.000", "2024-01-07 23:59:59.999")
	f("1w", "2023-12-31 23:59:59.999", "2023-12-25 00:00:00.000", "2023-12-31 23:59:59.999")
	f("1w", "2024-02-29 12:00:00.000", "2024-02-26 00:00:00.000", "2024-03-03 23:59:59.999")
	f("1w", "1970-01-01 00:00:00.000", "1969-12-29 00:00:00.000", "1970-01-04 23:59:59.999")
	// Months, leap years included.
	f("1M", "2024-02-29 12:00:00.000", "2024-02-01 00:00:00.000", "2024-02-29 23:59:59.999")
	f("1M", "2023-02-15 12:00:00.000", "2023-02-01 00:00:00.000", "2023-02-28 23:59:59.999")
	f("1M", "2000-02-29 23:59:59.999", "2000-02-01 00:00:00.000", "2000-02-29 23:59:59.999")
	f("1M", "2100-02-28 23:59:59.999", "2100-02-01 00:00:00.000", "2100-02-28 23:59:59.999")
	f("1M", "2023-12-31 23:59:59.999", "2023-12-01 00:00:00.000", "2023-12-31 23:59:59.999")
	f("1M", "1969-12-31 23:59:59.999", "1969-12-01 00:00:00.000", "1969-12-31 23:59:59.999")
	f("3M", "2024-02-29 12:00:00.000", "2024-01-01 00:00:00.000", "2024-03-31 23:59:59.999")
	f("3M", "2024-12-31 12:00:00.000", "2024-10-01 00:00:00.000", "2024-12-31 23:59:59.999")
	// Custom.
	f("90m", "2024-02-29 02:59:59.999", "2024-02-29 01:30:00.000", "2024-02-29 02:59:59.999")
	f("45s", "1970-01-01 00:00:44.999", "1970-01-01 00:00:00.000", "1970-01-01 00:00:44.999")
	f("1m", "1969-12-31 23:59:59.999", "1969-12-31 23:59:00.000", "1969-12-31 23:59:59.999")

	// Negative times use floor division.
	m, _ := ParseInterval("1m")
	if m.Period(-1) != -1 || m.OpenTime(-1) != -60_000 || m.Period(0) != 0 || m.OpenTime(-60_000) != -60_000 {
		t.Errorf("negative floor broken: %d %d", m.Period(-1), m.OpenTime(-1))
	}
	// WithOrigin shifts and normalises.
	d2, _ := ParseInterval("2d")
	if o := d2.WithOrigin(-msDay).Origin; o != msDay {
		t.Errorf("WithOrigin(-1d) origin %d", o)
	}
	if got := d2.WithOrigin(msDay).OpenTime(ms("1970-01-01 12:00:00.000")); got != -msDay {
		t.Errorf("2d with 1d origin: open %d", got)
	}
}

// The real BTCUSDT 3d klines 2017-08-17 .. 2026-07-01 all sit on the 3d grid.
func TestThreeDayGrid(t *testing.T) {
	iv, _ := ParseInterval("3d")
	for o := ms("2017-08-17 00:00:00.000"); o <= ms("2026-07-01 00:00:00.000"); o += 3 * msDay {
		if iv.OpenTime(o) != o || iv.OpenTime(o+3*msDay-1) != o {
			t.Fatalf("%s not a 3d period start", time.UnixMilli(o).UTC())
		}
	}
	if ms("2026-07-01 00:00:00.000")%(3*msDay) != msDay {
		t.Fatal("2026-07-01 should be 1 day mod 3 days")
	}
}
