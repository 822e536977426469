package fakex

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FaultHelp documents the fault SPEC that ParseFaults reads; cmd prints it in --help.
const FaultHelp = `Faults: a comma-separated list, e.g. "drop=5000,malformed=997,withhold=3@100,seed=7".
Frame counts are per connection and count the market frames a connection is sent
(injected frames excluded); "in total" counts count every frame the server produces.
  drop=N[/M]        close each connection abruptly (no close frame) after N frames sent on it
                    (at most M times in all; so too for stall and shutdown)
  stall=DUR@N[/M]   stop sending on a connection for DUR (Go duration, e.g. 5s) after N frames,
                    then resume; frames queued meanwhile are sent, in order
  malformed=N       every Nth frame on a connection is preceded by a malformed copy of it,
                    rotating truncated JSON, a bad number ("T":<n>.5) and invalid UTF-8;
                    the real frame follows right after
  withhold=N@K      per symbol, after K trades, N consecutive aggTrade ids are never sent
                    on the WebSocket (once per symbol); REST aggTrades still serves them
  dup=N             every Nth frame on a connection is sent twice
  ratelimit=N       every Nth REST request is answered 429 with Retry-After: 1
  shutdown=N[/M]    after N frames on a connection send serverShutdown ({"e":"serverShutdown",...}
                    raw; wrapped with stream "!serverShutdown" on combined streams), keep
                    streaming, close the connection 2 s later (Config.ShutdownGrace)
  ignorepings       never answer client pings
  late=DUR          a connection's streams take effect DUR after its upgrade is answered
                    (Go duration); the trades meanwhile are never sent on it
  list=SYMBOL@N     SYMBOL is not listed at start; after N frames in total it appears in
                    exchangeInfo and starts trading (repeatable)
  delist=SYMBOL@N   after N frames in total SYMBOL stops trading; exchangeInfo keeps it with
                    status SETTLING (futures) / BREAK (spot) (repeatable)
  bogus=SYMBOL@N    after N frames in total, SYMBOL's next trade is followed by a copy whose
                    aggTrade id is a billion ahead (a corrupt frame); REST never knows it
                    (synthetic feed; repeatable)
  seed=S            seed of the synthetic feed (overrides Config.Seed)`

// SymbolAt is a symbol and the total frame count at which a listing fault fires.
type SymbolAt struct {
	Symbol string
	After  int64
}

// Faults is a parsed fault SPEC; the zero value injects nothing. See FaultHelp.
type Faults struct {
	Drop          int64
	DropMax       int64 // 0: no limit
	StallMax      int64
	ShutdownMax   int64
	StallFor      time.Duration
	StallAfter    int64
	Malformed     int64
	WithholdN     int64
	WithholdAfter int64
	Dup           int64
	RateLimit     int64
	Shutdown      int64
	IgnorePings   bool
	Late          time.Duration
	List          []SymbolAt
	Delist        []SymbolAt
	Bogus         []SymbolAt
	Seed          int64
	HasSeed       bool
}

// ParseFaults parses a fault SPEC (see FaultHelp). The empty string is no fault.
func ParseFaults(spec string) (Faults, error) {
	var f Faults
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, val, hasVal := strings.Cut(item, "=")
		if err := f.set(name, val, hasVal); err != nil {
			return Faults{}, fmt.Errorf("cannot parse fault %q: %w", item, err)
		}
	}
	return f, nil
}

func (f *Faults) set(name, val string, hasVal bool) error {
	if name == "ignorepings" {
		if hasVal {
			return fmt.Errorf("%w: ignorepings takes no value", ErrFault)
		}
		f.IgnorePings = true
		return nil
	}
	if !hasVal || val == "" {
		return fmt.Errorf("%w: %s needs a value", ErrFault, name)
	}
	var err error
	switch name {
	case "drop":
		f.Drop, f.DropMax, err = limited(val)
	case "malformed":
		f.Malformed, err = positive(val)
	case "dup":
		f.Dup, err = positive(val)
	case "ratelimit":
		f.RateLimit, err = positive(val)
	case "shutdown":
		f.Shutdown, f.ShutdownMax, err = limited(val)
	case "seed":
		f.Seed, err = strconv.ParseInt(val, 10, 64)
		if err != nil {
			err = fmt.Errorf("%w: bad seed %q", ErrFault, val)
		}
		f.HasSeed = true
	case "stall":
		d, n, ok := strings.Cut(val, "@")
		if !ok {
			return fmt.Errorf("%w: want stall=DUR@N", ErrFault)
		}
		if f.StallFor, err = time.ParseDuration(d); err != nil || f.StallFor <= 0 {
			return fmt.Errorf("%w: bad duration %q", ErrFault, d)
		}
		f.StallAfter, f.StallMax, err = limited(n)
	case "late":
		if f.Late, err = time.ParseDuration(val); err != nil || f.Late <= 0 {
			return fmt.Errorf("%w: bad duration %q", ErrFault, val)
		}
	case "withhold":
		n, k, ok := strings.Cut(val, "@")
		if !ok {
			return fmt.Errorf("%w: want withhold=N@K", ErrFault)
		}
		if f.WithholdN, err = positive(n); err != nil {
			return err
		}
		f.WithholdAfter, err = nonNegative(k)
	case "list", "delist", "bogus":
		sym, n, ok := strings.Cut(val, "@")
		if !ok || sym == "" {
			return fmt.Errorf("%w: want %s=SYMBOL@N", ErrFault, name)
		}
		at := SymbolAt{Symbol: strings.ToUpper(sym)}
		if at.After, err = nonNegative(n); err != nil {
			return err
		}
		switch name {
		case "list":
			f.List = append(f.List, at)
		case "delist":
			f.Delist = append(f.Delist, at)
		default:
			f.Bogus = append(f.Bogus, at)
		}
	default:
		return fmt.Errorf("%w: unknown fault %q", ErrFault, name)
	}
	return err
}

// limited parses N or N/M: a positive count and an optional positive limit.
func limited(s string) (n, limit int64, err error) {
	a, b, ok := strings.Cut(s, "/")
	if n, err = positive(a); err != nil || !ok {
		return n, 0, err
	}
	limit, err = positive(b)
	return n, limit, err
}

func positive(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: want a positive integer, got %q", ErrFault, s)
	}
	return n, nil
}

func nonNegative(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: want a non-negative integer, got %q", ErrFault, s)
	}
	return n, nil
}

// String prints f back as a SPEC that ParseFaults reads.
func (f Faults) String() string {
	var parts []string
	add := func(name string, n int64) {
		if n > 0 {
			parts = append(parts, name+"="+strconv.FormatInt(n, 10))
		}
	}
	addMax := func(name string, n, limit int64) {
		if n > 0 && limit > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d/%d", name, n, limit))
		} else {
			add(name, n)
		}
	}
	addMax("drop", f.Drop, f.DropMax)
	if f.StallFor > 0 {
		stall := fmt.Sprintf("stall=%s@%d", f.StallFor, f.StallAfter)
		if f.StallMax > 0 {
			stall += fmt.Sprintf("/%d", f.StallMax)
		}
		parts = append(parts, stall)
	}
	add("malformed", f.Malformed)
	if f.WithholdN > 0 {
		parts = append(parts, fmt.Sprintf("withhold=%d@%d", f.WithholdN, f.WithholdAfter))
	}
	add("dup", f.Dup)
	add("ratelimit", f.RateLimit)
	addMax("shutdown", f.Shutdown, f.ShutdownMax)
	if f.IgnorePings {
		parts = append(parts, "ignorepings")
	}
	if f.Late > 0 {
		parts = append(parts, "late="+f.Late.String())
	}
	for _, l := range f.List {
		parts = append(parts, fmt.Sprintf("list=%s@%d", l.Symbol, l.After))
	}
	for _, l := range f.Delist {
		parts = append(parts, fmt.Sprintf("delist=%s@%d", l.Symbol, l.After))
	}
	for _, l := range f.Bogus {
		parts = append(parts, fmt.Sprintf("bogus=%s@%d", l.Symbol, l.After))
	}
	if f.HasSeed {
		parts = append(parts, "seed="+strconv.FormatInt(f.Seed, 10))
	}
	return strings.Join(parts, ",")
}
