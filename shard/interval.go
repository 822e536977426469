package shard

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Errors returned by ParseInterval, ParseIntervals and New.
var (
	ErrInterval  = errors.New("invalid interval")
	ErrDuplicate = errors.New("duplicate interval")
	ErrConfig    = errors.New("invalid shard config")
)

const (
	msSecond = int64(1000)
	msMinute = 60 * msSecond
	msHour   = 60 * msMinute
	msDay    = 24 * msHour
	msWeek   = 7 * msDay
	// minMonth is the shortest calendar month, used to size windows.
	minMonth = 28 * msDay
)

// Interval is a kline period on a fixed grid. Fixed-length intervals (Millis > 0)
// open at Origin + k*Millis; calendar-month intervals (Months > 0) open on the
// first day of every Months-th month counted from 1970-01, 00:00 UTC, and ignore
// Origin.
type Interval struct {
	Name   string // "1m", "1M", "90m"
	Millis int64  // period length in ms; 0 for calendar-month intervals
	Months int    // > 0 for month intervals ("1M"; custom "3M" allowed)
	Origin int64  // ms offset of the grid from the Unix epoch, in [0, Millis)
}

var binanceNames = []string{"1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M"}

// BinanceIntervals returns the intervals Binance publishes klines for, shortest
// first. Spot includes 1s; futures starts at 1m.
func BinanceIntervals(spot bool) []Interval {
	names := binanceNames
	if !spot {
		names = names[1:]
	}
	out := make([]Interval, len(names))
	for i, n := range names {
		iv, err := ParseInterval(n)
		if err != nil {
			panic("BUG: cannot parse Binance interval " + n + ": " + err.Error())
		}
		out[i] = iv
	}
	return out
}

// ParseInterval parses N followed by one unit of s, m, h, d, w (fixed lengths) or
// M (calendar months), N a positive integer without sign or leading zero. Weeks
// open on Monday 00:00 UTC; "3d" uses Binance's grid (open_time = 1 day mod 3
// days); every other length is aligned on the Unix epoch (see WithOrigin).
func ParseInterval(s string) (Interval, error) {
	if len(s) < 2 {
		return Interval{}, fmt.Errorf("cannot parse interval %q: want N followed by s, m, h, d, w or M: %w", s, ErrInterval)
	}
	num, unit := s[:len(s)-1], s[len(s)-1]
	if num[0] < '1' || num[0] > '9' {
		return Interval{}, fmt.Errorf("cannot parse interval %q: count must be a positive integer without sign or leading zero: %w", s, ErrInterval)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return Interval{}, fmt.Errorf("cannot parse interval %q: count must be a positive integer: %w", s, ErrInterval)
	}
	iv := Interval{Name: s}
	var unitMs int64
	switch unit {
	case 's':
		unitMs = msSecond
	case 'm':
		unitMs = msMinute
	case 'h':
		unitMs = msHour
	case 'd':
		unitMs = msDay
	case 'w':
		unitMs = msWeek
	case 'M':
		if n > math.MaxInt32/12 {
			return Interval{}, fmt.Errorf("cannot parse interval %q: too long: %w", s, ErrInterval)
		}
		iv.Months = int(n)
		return iv, nil
	default:
		return Interval{}, fmt.Errorf("cannot parse interval %q: unknown unit %q (want s, m, h, d, w or M): %w", s, unit, ErrInterval)
	}
	// Limit to ~292 years / 1000 so that open times never overflow int64.
	if n > math.MaxInt64/unitMs/1000 {
		return Interval{}, fmt.Errorf("cannot parse interval %q: too long: %w", s, ErrInterval)
	}
	iv.Millis = n * unitMs
	switch {
	case unit == 'w':
		iv = iv.WithOrigin(4 * msDay) // 1970-01-05 was a Monday
	case s == "3d":
		iv = iv.WithOrigin(msDay)
	}
	return iv, nil
}

// ParseIntervals parses a comma-separated list such as "1m,5m,1h". Blanks
// around names are ignored; empty items and duplicates (same grid, whatever the
// spelling, e.g. "60m" and "1h") are rejected.
func ParseIntervals(list string) ([]Interval, error) {
	parts := strings.Split(list, ",")
	out := make([]Interval, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("cannot parse interval list %q: empty item: %w", list, ErrInterval)
		}
		iv, err := ParseInterval(p)
		if err != nil {
			return nil, fmt.Errorf("cannot parse interval list: %w", err)
		}
		for _, o := range out {
			if o.same(iv) {
				return nil, fmt.Errorf("cannot parse interval list %q: %s and %s: %w", list, o.Name, iv.Name, ErrDuplicate)
			}
		}
		out = append(out, iv)
	}
	return out, nil
}

// WithOrigin returns iv with its grid shifted by ms from the Unix epoch (reduced
// modulo the interval length). Month intervals ignore it.
func (iv Interval) WithOrigin(ms int64) Interval {
	if iv.Millis > 0 {
		iv.Origin = floorMod(ms, iv.Millis)
	}
	return iv
}

func (iv Interval) same(o Interval) bool {
	return iv.Millis == o.Millis && iv.Months == o.Months && (iv.Months > 0 || iv.Origin == o.Origin)
}

func (iv Interval) valid() bool {
	return (iv.Millis > 0 && iv.Months == 0 && iv.Origin >= 0 && iv.Origin < iv.Millis) ||
		(iv.Millis == 0 && iv.Months > 0)
}

// Period returns the sequence number of the period containing t: floor((t -
// Origin) / Millis), or for month intervals the number of Months-long periods
// since 1970-01.
func (iv Interval) Period(t int64) int64 {
	if iv.Months > 0 {
		return floorDiv(monthIndex(t), int64(iv.Months))
	}
	return floorDiv(t-iv.Origin, iv.Millis)
}

// OpenTime returns the open time of the period containing t.
func (iv Interval) OpenTime(t int64) int64 { return iv.periodOpen(iv.Period(t)) }

// NextOpen returns the open time of the period after the one opening at open.
func (iv Interval) NextOpen(open int64) int64 { return iv.periodOpen(iv.Period(open) + 1) }

// CloseTime returns the close time (last millisecond) of the period opening at
// open: NextOpen(open) - 1.
func (iv Interval) CloseTime(open int64) int64 { return iv.NextOpen(open) - 1 }

// periodOpen is the inverse of Period.
func (iv Interval) periodOpen(p int64) int64 {
	if iv.Months > 0 {
		return monthOpen(p * int64(iv.Months))
	}
	return p*iv.Millis + iv.Origin
}

// monthIndex is the number of calendar months from 1970-01 to the month of t.
func monthIndex(t int64) int64 {
	y, m, _ := time.UnixMilli(t).UTC().Date()
	return int64(y-1970)*12 + int64(m-1)
}

// monthOpen is the Unix millisecond of the first day of month idx (months since 1970-01).
func monthOpen(idx int64) int64 {
	y := 1970 + floorDiv(idx, 12)
	m := floorMod(idx, 12)
	return time.Date(int(y), time.Month(m+1), 1, 0, 0, 0, 0, time.UTC).UnixMilli()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m != 0 && ((m < 0) != (b < 0)) {
		m += b
	}
	return m
}
