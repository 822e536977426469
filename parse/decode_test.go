package parse

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

type namedEngine struct {
	name   string
	decode func(dst *Trade, frame []byte) (Kind, error)
}

// fullEngines returns the engines that implement the whole semantics.
func fullEngines(syms *Symbols) []namedEngine {
	table := &SymbolTable{}
	table.cur.Store(syms)
	simd := NewDecoder(Config{Engine: EngineSIMD}, table)
	auto := NewDecoder(DefaultConfig(), table)
	fast := NewDecoder(Config{Engine: EngineFast}, table)
	return []namedEngine{
		{"general", func(dst *Trade, f []byte) (Kind, error) { return decodeGeneral(dst, f, syms) }},
		{"simd", simd.DecodeSIMD},
		{"std", func(dst *Trade, f []byte) (Kind, error) { return DecodeStd(dst, f, syms) }},
		{"decoder=auto", auto.Decode},
		{"decoder=fast", fast.Decode},
	}
}

type outcome struct {
	kind  Kind
	err   error
	trade Trade
}

func (o outcome) String() string { return fmt.Sprintf("%v/%v/%+v", o.kind, ReasonOf(o.err), o.trade) }

func run(decode func(*Trade, []byte) (Kind, error), frame []byte) outcome {
	var t Trade
	k, err := decode(&t, frame)
	return outcome{k, err, t}
}

func TestRealFrames(t *testing.T) {
	syms := NewSymbols(testSymbols)
	for _, name := range ndjsonFiles {
		t.Run(name, func(t *testing.T) {
			lines := readLines(t, name)
			engines := fullEngines(syms)
			counts := map[Kind]int{}
			for _, line := range lines {
				want := KindOther
				switch {
				case bytes.Contains(line, []byte(`@aggTrade"`)):
					want = KindAggTrade
				case bytes.Contains(line, []byte(`@depth`)):
					want = KindDepth
				case bytes.Contains(line, []byte(`@bookTicker"`)):
					want = KindBookTicker
				case bytes.Contains(line, []byte(`@kline_`)):
					want = KindKline
				}
				counts[want]++
				fast := run(func(d *Trade, f []byte) (Kind, error) { return DecodeFast(d, f, syms) }, line)
				if fast.err != nil || fast.kind != want {
					t.Fatalf("fast: %v, want kind %v on %s", fast, want, line)
				}
				if want == KindAggTrade {
					checkTradeAgainstText(t, fast.trade, line, syms)
				}
				for _, e := range engines {
					if got := run(e.decode, line); got != fast {
						t.Fatalf("%s: %v, fast %v on %s", e.name, got, fast, line)
					}
				}
			}
			if counts[KindAggTrade] == 0 || counts[KindBookTicker] == 0 {
				t.Fatalf("recording lacks aggTrade or bookTicker frames: %v", counts)
			}
		})
	}
}

// checkTradeAgainstText re-derives the fields by plain text search.
func checkTradeAgainstText(t *testing.T, tr Trade, line []byte, syms *Symbols) {
	t.Helper()
	field := func(key string) string {
		i := bytes.Index(line, []byte(`"`+key+`":`))
		if i < 0 {
			t.Fatalf("no %s in %s", key, line)
		}
		rest := line[i+len(key)+3:]
		end := bytes.IndexAny(rest, ",}")
		return string(bytes.Trim(rest[:end], `"`))
	}
	got := fmt.Sprintf("%d %s %s %d %d %d %d %s %v", tr.AggID, tr.Price, tr.Qty, tr.FirstID, tr.LastID, tr.TradeTime, tr.EventTime, syms.Name(tr.Symbol), tr.BuyerMaker)
	trim := func(s string) string {
		if bytes.IndexByte([]byte(s), '.') >= 0 {
			s = string(bytes.TrimRight([]byte(s), "0"))
			s = string(bytes.TrimSuffix([]byte(s), []byte(".")))
		}
		return s
	}
	want := fmt.Sprintf("%s %s %s %s %s %s %s %s %s", field("a"), trim(field("p")), trim(field("q")), field("f"), field("l"), field("T"), field("E"), field("s"), field("m"))
	if got != want {
		t.Fatalf("trade %s, want %s", got, want)
	}
}

func TestErrorReasons(t *testing.T) {
	syms := NewSymbols(testSymbols)
	const base = bareSpot
	repl := func(old, new string) string {
		if !bytes.Contains([]byte(base), []byte(old)) {
			panic("test: " + old)
		}
		return string(bytes.Replace([]byte(base), []byte(old), []byte(new), 1))
	}
	cases := []struct {
		name  string
		frame string
		kind  Kind
		err   error
	}{
		{"malformed", base[:len(base)-1], KindOther, ErrMalformed},
		{"malformed-trailing", base + "x", KindOther, ErrMalformed},
		{"empty", "", KindOther, ErrMalformed},
		{"missing-p", repl(`"p":"0.33993000",`, ``), KindAggTrade, ErrMissingField},
		{"missing-m", repl(`,"m":true`, ``), KindAggTrade, ErrMissingField},
		{"wrong-type-p", repl(`"p":"0.33993000"`, `"p":0.33993`), KindAggTrade, ErrMalformed},
		{"wrong-type-a", repl(`"a":31718372`, `"a":"31718372"`), KindAggTrade, ErrMalformed},
		{"bad-number-empty", repl(`"0.33993000"`, `""`), KindAggTrade, ErrBadNumber},
		{"bad-number-exp", repl(`"0.33993000"`, `"1e-5"`), KindAggTrade, ErrBadNumber},
		{"bad-number-plus", repl(`"0.33993000"`, `"+1"`), KindAggTrade, ErrBadNumber},
		{"bad-number-dot", repl(`"0.33993000"`, `"."`), KindAggTrade, ErrBadNumber},
		{"bad-number-leading-dot", repl(`"0.33993000"`, `".5"`), KindAggTrade, ErrBadNumber},
		{"bad-number-trailing-dot", repl(`"0.33993000"`, `"5."`), KindAggTrade, ErrBadNumber},
		{"bad-number-leading-zero", repl(`"0.33993000"`, `"007"`), KindAggTrade, ErrBadNumber},
		{"bad-number-int-frac", repl(`"a":31718372`, `"a":31718372.5`), KindAggTrade, ErrBadNumber},
		{"bad-number-int-exp", repl(`"a":31718372`, `"a":3e7`), KindAggTrade, ErrBadNumber},
		{"negative-price", repl(`"0.33993000"`, `"-1"`), KindAggTrade, ErrNegative},
		{"negative-id", repl(`"a":31718372`, `"a":-5`), KindAggTrade, ErrNegative},
		{"zero-price", repl(`"0.33993000"`, `"0.0"`), KindAggTrade, ErrZeroPrice},
		{"zero-qty", repl(`"99.90000000"`, `"0"`), KindAggTrade, ErrZeroQuantity},
		{"too-many-frac", repl(`"0.33993000"`, `"0.123456789"`), KindAggTrade, ErrTooManyDigits},
		{"too-many-int", repl(`"0.33993000"`, `"1234567890123"`), KindAggTrade, ErrTooManyDigits},
		{"out-of-range-decimal", repl(`"0.33993000"`, `"184467440738"`), KindAggTrade, ErrOutOfRange},
		{"out-of-range-int", repl(`"a":31718372`, `"a":9223372036854775808`), KindAggTrade, ErrOutOfRange},
		{"bad-trade-range", repl(`"f":38248910`, `"f":38248913`), KindAggTrade, ErrBadTradeRange},
		{"trade-range-wraps", bareSpotRange("0", "9223372036854775807"), KindAggTrade, ErrBadTradeRange},
		{"trade-range-wraps-off-canonical", reorderedRange("0", "9223372036854775807"), KindAggTrade, ErrBadTradeRange},
		{"trade-range-at-bound", bareSpotRange("5", "1099511627781"), KindAggTrade, ErrBadTradeRange},
		{"trade-range-at-bound-off-canonical", reorderedRange("0", "1099511627776"), KindAggTrade, ErrBadTradeRange},
		{"trade-range-before-timestamp", strings.Replace(bareSpotRange("1", "9223372036854775807"), `"T":1628952396572`, `"T":0`, 1), KindAggTrade, ErrBadTradeRange},
		{"bad-timestamp-zero", repl(`"T":1628952396572`, `"T":0`), KindAggTrade, ErrBadTimestamp},
		{"bad-timestamp-micros", repl(`"E":1628952396573`, `"E":1628952396573000`), KindAggTrade, ErrBadTimestamp},
		{"unknown-symbol", repl(`"FTMUSDT"`, `"NOPEUSDT"`), KindAggTrade, ErrUnknownSymbol},
		{"invalid-utf8", repl(`"FTMUSDT"`, "\"FTM\xffUSDT\""), KindOther, ErrInvalidUTF8},
		{"order-missing-before-type", `{"e":"aggTrade","a":"x"}`, KindAggTrade, ErrMissingField},
		{"order-int-before-price", `{"e":"aggTrade","E":1,"s":"FTMUSDT","a":1,"p":"x","q":"1","f":1,"l":-1,"T":1,"m":true}`, KindAggTrade, ErrNegative},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, e := range fullEngines(syms) {
				dst := Trade{AggID: 42}
				k, err := e.decode(&dst, []byte(c.frame))
				if k != c.kind || err != c.err {
					t.Errorf("%s: (%v, %v), want (%v, %v)", e.name, k, err, c.kind, c.err)
				}
				if dst != (Trade{AggID: 42}) {
					t.Errorf("%s: dst written on error: %+v", e.name, dst)
				}
			}
			var dst Trade
			if k, err := DecodeFast(&dst, []byte(c.frame), syms); err != ErrNotCanonical && (k != c.kind || err != c.err) {
				t.Errorf("fast: (%v, %v), want (%v, %v) or ErrNotCanonical", k, err, c.kind, c.err)
			}
		})
	}
	t.Run("too-large", func(t *testing.T) {
		d := NewDecoder(Config{MaxFrame: 64}, NewSymbolTable(testSymbols...))
		if k, err := d.Decode(new(Trade), []byte(bareSpot)); k != KindOther || err != ErrTooLarge {
			t.Fatalf("(%v, %v), want ErrTooLarge", k, err)
		}
		if d.Counters().Errors[ReasonTooLarge] != 1 {
			t.Fatal("ErrTooLarge not counted")
		}
	})
}

// TestTradeRangeBound checks the largest accepted range on every engine:
// l-f = 2^40-1, so Count is 2^40.
func TestTradeRangeBound(t *testing.T) {
	syms := NewSymbols(testSymbols)
	for _, frame := range []string{bareSpotRange("0", "1099511627775"), reorderedRange("7", "1099511627782")} {
		for _, e := range fullEngines(syms) {
			got := run(e.decode, []byte(frame))
			if got.kind != KindAggTrade || got.err != nil || got.trade.Count() != maxTradeSpan {
				t.Errorf("%s: %v, want count 2^40 on %s", e.name, got, frame)
			}
		}
	}
	var tr Trade
	if err := DecodeCSV(&tr, []byte("5,1.5,1,0,1099511627775,1735689600123,true"), 1); err != nil || tr.Count() != maxTradeSpan {
		t.Errorf("DecodeCSV: %v, count %d", err, tr.Count())
	}
}

func TestKinds(t *testing.T) {
	syms := NewSymbols(testSymbols)
	cases := []struct {
		frame string
		kind  Kind
	}{
		{depthFrame, KindDepth},
		{spotBook, KindBookTicker},
		{`{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":1,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4","T":1,"E":2}}`, KindBookTicker},
		{`{"u":1,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}`, KindOther}, // bare spot bookTicker: nothing names it
		{`{"e":"kline","E":1,"s":"BTCUSDT","k":{"t":1}}`, KindKline},
		{`{"e":"continuous_kline","E":1}`, KindKline},
		{`{"stream":"btcusdt@markPrice","data":{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"1"}}`, KindMarkPrice},
		{`{"e":"24hrTicker","E":1}`, KindTicker},
		{`{"e":"24hrMiniTicker","E":1}`, KindTicker},
		{`{"e":"forceOrder","E":1,"o":{}}`, KindForceOrder},
		{`{"e":"trade","E":1,"t":5}`, KindTrade},
		{`{"result":null,"id":1}`, KindResult},
		{`{"error":{"code":2,"msg":"Invalid request"},"id":1}`, KindResult},
		{`{"e":"listenKeyExpired","E":1}`, KindOther},
		{`{"stream":"!markPrice@arr","data":[{"e":"markPriceUpdate"}]}`, KindOther},
		{`[1,2]`, KindOther},
		{`5`, KindOther},
		{`{"e":5,"stream":"x@bookTicker","data":{"u":1}}`, KindBookTicker},
		{` { "stream" : "x@aggTrade" , "data" : { "e" : "depthUpdate" } } `, KindDepth},
	}
	for _, c := range cases {
		for _, e := range fullEngines(syms) {
			if k, err := e.decode(new(Trade), []byte(c.frame)); k != c.kind || err != nil {
				t.Errorf("%s: (%v, %v), want %v on %s", e.name, k, err, c.kind, c.frame)
			}
		}
		if k, err := DecodeFast(new(Trade), []byte(c.frame), syms); err != ErrNotCanonical && (k != c.kind || err != nil) {
			t.Errorf("fast: (%v, %v), want %v on %s", k, err, c.kind, c.frame)
		}
	}
}

// TestOffCanonical checks that reordered keys, whitespace and escapes leave
// the fast path and decode to the same trade.
func TestOffCanonical(t *testing.T) {
	syms := NewSymbols(testSymbols)
	var want Trade
	if k, err := DecodeFast(&want, []byte(bareSpot), syms); k != KindAggTrade || err != nil {
		t.Fatal(k, err)
	}
	variants := []string{
		`{"E":1628952396573,"e":"aggTrade","a":31718372,"s":"FTMUSDT","p":"0.33993000","q":"99.90000000","f":38248910,"l":38248912,"T":1628952396572,"m":true}`,
		"{ \"e\" : \"aggTrade\",\n\t\"E\":1628952396573,\"s\":\"FTMUSDT\",\"a\":31718372,\"p\":\"0.33993000\",\"q\":\"99.90000000\",\"f\":38248910,\"l\":38248912,\"T\":1628952396572,\"m\":true,\"M\":true}\r\n",
		`{"e":"agg\u0054rade","E":1628952396573,"s":"FTM\u0055SDT","a":31718372,"p":"0.3399300\u0030","q":"99.90000000","f":38248910,"l":38248912,"T":1628952396572,"m":true,"x":[{"y":null}]}`,
		`{"data":` + bareSpot + `,"stream":"ftmusdt@aggTrade"}`,
		`{"stream":"ftmusdt@aggTrade","data":{"e":"depthUpdate","e":"aggTrade","E":1628952396573,"s":"FTMUSDT","a":1,"a":31718372,"p":"0.33993000","q":"99.90000000","f":38248910,"l":38248912,"T":1628952396572,"m":true}}`,
		`{"e":"aggTrade","E":1628952396573,"s":"FTMUSDT","a":31718372,"p":"0.339930000000","q":"99.90000000","f":38248910,"l":38248912,"T":1628952396572,"m":true}`,
	}
	for _, v := range variants {
		lazy := strings.Contains(v, `"e":"depthUpdate","e"`)
		var fast Trade
		if k, err := DecodeFast(&fast, []byte(v), syms); !lazy && err != ErrNotCanonical && (k != KindAggTrade || err != nil || fast != want) {
			t.Errorf("fast: (%v, %v) %+v on %s", k, err, fast, v)
		}
		for _, e := range fullEngines(syms) {
			if lazy && strings.HasPrefix(e.name, "decoder") {
				continue // lazy classification by the fast path: documented
			}
			var got Trade
			if k, err := e.decode(&got, []byte(v)); k != KindAggTrade || err != nil || got != want {
				t.Errorf("%s: (%v, %v) %+v, want %+v on %s", e.name, k, err, got, want, v)
			}
		}
	}
}

func TestFuturesFrame(t *testing.T) {
	syms := NewSymbols(testSymbols)
	var tr Trade
	k, err := DecodeFast(&tr, []byte(futuresFrame), syms)
	want := Trade{AggID: 16599292, FirstID: 23961322, LastID: 23961322, TradeTime: 1626992741421, EventTime: 1626992741575,
		Price: 101_100_000, Qty: 10 * scaleFactor, Symbol: 3}
	if k != KindAggTrade || err != nil || tr != want {
		t.Fatalf("(%v, %v) %+v, want %+v", k, err, tr, want)
	}
}

func TestDecoderCounters(t *testing.T) {
	d := NewDecoder(DefaultConfig(), NewSymbolTable(testSymbols...))
	frames := []string{futuresFrame, spotFrame, depthFrame, spotBook, `{"result":null,"id":1}`, `{`, bareSpot[:40]}
	for _, f := range frames {
		d.Decode(new(Trade), []byte(f))
	}
	c := d.Counters()
	if c.Frames[KindAggTrade] != 2 || c.Frames[KindDepth] != 1 || c.Frames[KindBookTicker] != 1 || c.Frames[KindResult] != 1 || c.Frames[KindOther] != 2 {
		t.Fatalf("frames %v", c.Frames)
	}
	if c.Errors[ReasonMalformed] != 2 || c.Fallbacks != 3 {
		t.Fatalf("errors %v fallbacks %d", c.Errors, c.Fallbacks)
	}
	var sum Counters
	sum.Add(c)
	sum.Add(c)
	if sum.Frames[KindAggTrade] != 4 || sum.Errors[ReasonMalformed] != 4 || sum.Fallbacks != 6 {
		t.Fatalf("Add: %+v", sum)
	}
}

func TestSymbolsAddedLater(t *testing.T) {
	table := NewSymbolTable("BTCUSDT")
	d := NewDecoder(DefaultConfig(), table)
	if _, err := d.Decode(new(Trade), []byte(spotFrame)); err != ErrUnknownSymbol {
		t.Fatalf("got %v, want ErrUnknownSymbol", err)
	}
	table.Add("FTMUSDT")
	var tr Trade
	if _, err := d.Decode(&tr, []byte(spotFrame)); err != nil || tr.Symbol != 1 {
		t.Fatalf("after Add: %v %+v", err, tr)
	}
}

func TestSymbols(t *testing.T) {
	s := NewSymbols([]string{"BTCUSDT", "ETHUSDT", "BTCUSDT"})
	if s.Len() != 2 || s.Name(0) != "BTCUSDT" || s.Name(1) != "ETHUSDT" || s.Name(7) != "" {
		t.Fatalf("%v", s.Names())
	}
	if i, ok := s.Lookup([]byte("BTCUSDT")); !ok || i != 0 {
		t.Errorf("Lookup(BTCUSDT) = %d %v", i, ok)
	}
	// Exact names: no case folding, in the table or in the lookup.
	for _, name := range []string{"btcusdt", "BtcUsdt", "BTCUSDt", "XRPUSDT", "BTCUSDT ", ""} {
		if i, ok := s.Lookup([]byte(name)); ok {
			t.Errorf("Lookup(%q) = %d, want not found", name, i)
		}
	}
	s2 := s.With("XRPUSDT", "ETHUSDT", "xrpusdt")
	if s.Len() != 2 || s2.Len() != 4 || s2.Name(2) != "XRPUSDT" || s2.Name(1) != "ETHUSDT" || s2.Name(3) != "xrpusdt" {
		t.Fatalf("With: %v / %v", s.Names(), s2.Names())
	}
	var table SymbolTable
	if table.Load().Len() != 0 {
		t.Fatal("zero SymbolTable not empty")
	}
	table.Add("A")
	table.Add("B", "A")
	if got := table.Load().Names(); len(got) != 2 || got[1] != "B" {
		t.Fatal(got)
	}
	upper := []byte("ETHUSDT")
	if n := testing.AllocsPerRun(100, func() { s.Lookup(upper) }); n != 0 {
		t.Errorf("Lookup allocates %v", n)
	}
	lower := []byte("ethusdt")
	if n := testing.AllocsPerRun(100, func() { s.Lookup(lower) }); n != 0 {
		t.Errorf("lower-case Lookup allocates %v", n)
	}
}

// TestSymbolCase: a frame whose "s" is not exactly a known symbol is an unknown
// symbol on every engine and in the Decoder's counters, whatever its layout:
// Binance sends upper-case symbols only, and "ftmusdt" is not FTMUSDT.
func TestSymbolCase(t *testing.T) {
	syms := NewSymbols(testSymbols)
	withSymbol := func(frame, symbol string) string {
		if !strings.Contains(frame, `"s":"FTMUSDT"`) {
			panic("test: no FTMUSDT in " + frame)
		}
		return strings.Replace(frame, `"s":"FTMUSDT"`, `"s":"`+symbol+`"`, 1)
	}
	offCanonical := strings.ReplaceAll(spotReordered, `": `, `":`) // still off the canonical layout: spaces, order
	for _, symbol := range []string{"ftmusdt", "FtmUsdt", "FTMUSDt", "fTMUSDT", `ftm\u0055SDT`, `FTMUSDT\u0000`} {
		for layout, frame := range map[string]string{"bare": bareSpot, "combined": spotFrame, "off-canonical": offCanonical} {
			frame := withSymbol(frame, symbol)
			for _, e := range fullEngines(syms) {
				if got := run(e.decode, []byte(frame)); got.kind != KindAggTrade || got.err != ErrUnknownSymbol {
					t.Errorf("%s %s %s: %v, want an unknown symbol", layout, symbol, e.name, got)
				}
			}
			if k, err := DecodeFast(new(Trade), []byte(frame), syms); err != ErrNotCanonical && (k != KindAggTrade || err != ErrUnknownSymbol) {
				t.Errorf("%s %s fast: (%v, %v), want an unknown symbol", layout, symbol, k, err)
			}
		}
	}
	// An escape that spells the exact name is the exact name.
	for _, e := range fullEngines(syms) {
		if got := run(e.decode, []byte(withSymbol(bareSpot, `FTM\u0055SDT`))); got.err != nil || syms.Name(got.trade.Symbol) != "FTMUSDT" {
			t.Errorf("%s: %v on an escaped FTMUSDT", e.name, got)
		}
	}
	d := NewDecoder(DefaultConfig(), NewSymbolTable(testSymbols...))
	for _, frame := range []string{withSymbol(bareSpot, "ftmusdt"), withSymbol(spotFrame, "Ftmusdt"), withSymbol(offCanonical, "ftmUSDT")} {
		if _, err := d.Decode(new(Trade), []byte(frame)); err != ErrUnknownSymbol {
			t.Errorf("Decode: %v, want ErrUnknownSymbol on %s", err, frame)
		}
	}
	if c := d.Counters(); c.Errors[ReasonUnknownSymbol] != 3 || c.Frames[KindAggTrade] != 3 {
		t.Errorf("counters: %d unknown symbols in %d aggTrade frames, want 3 in 3", c.Errors[ReasonUnknownSymbol], c.Frames[KindAggTrade])
	}
}

// TestEnginesAgree pins frames on which simdjson-go and encoding/json once
// disagreed: simdjson-go let malformed escapes and control bytes through and
// refused valid documents (lone surrogates, float64 overflow, deep nesting).
// The general engine, simdjson-go (called directly, through EngineSIMD and
// through EngineAuto on a large frame) must give encoding/json's answer. (The
// fast path classifies "e":"x" lazily, without validating: documented.)
func TestEnginesAgree(t *testing.T) {
	syms := NewSymbols(testSymbols)
	table := NewSymbolTable(testSymbols...)
	simd := NewDecoder(Config{Engine: EngineSIMD}, table)
	engines := []namedEngine{
		{"general", func(dst *Trade, f []byte) (Kind, error) { return decodeGeneral(dst, f, syms) }},
		{"simd", simd.DecodeSIMD},
		{"decoder=simd", simd.Decode},
	}
	big := NewDecoder(Config{MaxFrame: 1 << 20}, table)
	deep := strings.Repeat("[", 200) + strings.Repeat("]", 200)
	frames := []string{
		`{"e":"x","s":"\u5f5 "}`, // FuzzDecode's find: an invalid \u escape
		` {"e" : "LggTrade", "s":"btc\u0055\u 055ssdt"} `,
		`{"e":"x","s":"\u12"}`, `{"e":"x","s":"\u"}`, `{"e":"x","s":"\uZZZZ"}`, `{"e":"x","s":"\x41"}`, `{"e":"x","s":"\`,
		`{"e":"x","s":"\\u5f5 "}`, // an escaped backslash, then plain text: valid
		`{"e":"x","s":"a` + "\t" + `b"}`, `{"e":"x","s":"a` + "\x01" + `b"}`, "{\"e\":\"x\"}\x0c",
		`{"e":"x"}\`, `{"e":"x",\"s":1}`, `{"e":"x","s":"a`, `"a`,
		"[]\u2003", "[]\u00a0", `{"e":"x"}` + "\u2003", "\u00a0[]", "[1,\u20032]", "[]\x7f", `{"e":"x"}#`, "[]\u00e9",
		`{"stream":"a@bookTicker","data":{"u":-07.676}}`, `[-01.5]`, `[-01]`, `[01.5]`, `[1.]`, `[-]`, `[1e]`, `[.5]`, `[+1]`,
		`[tru]`, `[truex]`, `[nul]`, `[1true]`, `[true1]`, `[1 2]`, `["a""b"]`, `[-0.0e-0]`, `[0]`, `{"a":[true,false,null]}`,
		`{"e":"x","s":"\u00a0"}`, "{\"e\":\"x\",\"s\":\"\u2003\x7f\"}", // non-ASCII and DEL inside strings: valid
		`{"e":"x","s":"\ud800"}`, `{"e":"x","s":"\udc00\ud800"}`, `{"e":"aggTrade","s":"\ud83d\ude00"}`,
		`{"e":"x","n":1e400}`, `{"e":"x","n":-1e400}`, `{"e":"x","n":1` + strings.Repeat("0", 400) + `}`,
		`{"e":"x","d":` + deep + `}`, `{"stream":"s","data":` + deep + `}`,
		`{"\u0065":"depthUpdate"}`, `{"stream":"a@bookTicker","d\u0061ta":{"u":1}}`,
		`{"e":"aggTrade","E":1628952396573,"s":"FTMUSDT","a":1e400,"p":"1","q":"1","f":1,"l":1,"T":1628952396572,"m":true}`,
	}
	for _, frame := range frames {
		want := run(func(d *Trade, f []byte) (Kind, error) { return DecodeStd(d, f, syms) }, []byte(frame))
		for _, e := range engines {
			if got := run(e.decode, []byte(frame)); got != want {
				t.Errorf("%s: %v, std %v on %q", e.name, got, want, frame)
			}
		}
		// Off the canonical layout (a leading space) and above autoGeneralMax,
		// EngineAuto hands the frame to simdjson-go.
		padded := " " + frame + strings.Repeat(" ", autoGeneralMax)
		wantPadded := run(func(d *Trade, f []byte) (Kind, error) { return DecodeStd(d, f, syms) }, []byte(padded))
		if got := run(big.Decode, []byte(padded)); got != wantPadded {
			t.Errorf("auto on a large frame: %v, std %v on %q", got, wantPadded, frame)
		}
	}
}

func TestAllocs(t *testing.T) {
	d := NewDecoder(DefaultConfig(), NewSymbolTable(testSymbols...))
	var tr Trade
	for _, f := range []string{futuresFrame, spotFrame, bareSpot, depthFrame, spotBook} {
		frame := []byte(f)
		n := testing.AllocsPerRun(200, func() {
			if _, err := d.Decode(&tr, frame); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("Decode allocates %v per frame on %s", n, f)
		}
	}
	// Off the canonical layout EngineAuto falls back to the general engine,
	// which allocates nothing either.
	reordered := []byte(spotReordered)
	before := d.Counters().Fallbacks
	if n := testing.AllocsPerRun(200, func() {
		if k, err := d.Decode(&tr, reordered); k != KindAggTrade || err != nil {
			t.Fatal(k, err)
		}
	}); n != 0 {
		t.Errorf("EngineAuto Decode allocates %v per off-canonical frame", n)
	}
	if d.Counters().Fallbacks == before {
		t.Error("the off-canonical frame did not take the fallback")
	}
	row := []byte("13519807,0.00141342,23.00000000,15373518,15373518,1570752011620,True,True\r")
	if n := testing.AllocsPerRun(200, func() {
		if err := DecodeCSV(&tr, row, 1); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("DecodeCSV allocates %v", n)
	}
	bad := []byte(bareSpot[:60])
	if n := testing.AllocsPerRun(200, func() { d.Decode(&tr, bad) }); n != 0 && !SIMDSupported() {
		t.Logf("malformed frame on the general path allocates %v", n)
	}
}

func TestNumbers(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Decimal
		err  error
	}{
		{"0", 0, nil}, {"0.5", 50_000_000, nil}, {"3917", 3917 * scaleFactor, nil}, {"0.00000638", 638, nil},
		{"1.000000000000", scaleFactor, nil}, {"184467440737.09551615", 18446744073709551615, nil},
		{"184467440737.09551616", 0, ErrOutOfRange}, {"99999999999", 99999999999 * scaleFactor, nil},
		{"123456789012.5", 12345678901250000000, nil}, {"1.123456789", 0, ErrTooManyDigits},
		{"-0", 0, ErrNegative}, {"00", 0, ErrBadNumber}, {"1.", 0, ErrBadNumber}, {"1.2.3", 0, ErrBadNumber},
		{"１", 0, ErrBadNumber}, {" 1", 0, ErrBadNumber},
	} {
		got, err := parseDecimal([]byte(c.in))
		if got != c.want || err != c.err {
			t.Errorf("parseDecimal(%q) = %v, %v; want %v, %v", c.in, got, err, c.want, c.err)
		}
		if err == nil && AppendDecimal(nil, got) == nil {
			t.Error("AppendDecimal")
		}
	}
	for _, c := range []struct {
		in   string
		want int64
		err  error
	}{
		{"0", 0, nil}, {"-0", 0, nil}, {"9223372036854775807", 9223372036854775807, nil},
		{"9223372036854775808", 0, ErrOutOfRange}, {"-5", 0, ErrNegative}, {"1.0", 0, ErrBadNumber},
		{"1e3", 0, ErrBadNumber}, {"", 0, ErrBadNumber}, {"-", 0, ErrBadNumber}, {"-1e99", 0, ErrBadNumber},
		{"-99999999999999999999", 0, ErrNegative}, {"123456789012345678", 123456789012345678, nil},
	} {
		got, err := parseInt([]byte(c.in))
		if got != c.want || err != c.err {
			t.Errorf("parseInt(%q) = %v, %v; want %v, %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestReasons(t *testing.T) {
	seen := map[string]bool{}
	for r := Reason(0); int(r) < NumReasons; r++ {
		if s := r.String(); s == "invalid" || seen[s] {
			t.Errorf("reason %d name %q", r, s)
		} else {
			seen[s] = true
		}
	}
	if ReasonOf(fmt.Errorf("cannot x: %w", ErrBadNumber)) != ReasonBadNumber || ReasonOf(nil) != ReasonNone || ReasonOf(errors.New("x")) != ReasonUnknown {
		t.Error("ReasonOf")
	}
	for k := Kind(0); int(k) < NumKinds; k++ {
		if k.String() == "invalid" {
			t.Errorf("kind %d", k)
		}
	}
}
