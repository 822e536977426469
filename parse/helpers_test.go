package parse

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"
)

var dataDir = filepath.Join("..", "..", "shared", "data", "binance")

// sharedFile returns the path of a shared data file or skips the test.
func sharedFile(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join(dataDir, name)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("shared Binance data %s absent (%v): skipping", p, err)
	}
	return p
}

var ndjsonFiles = []string{"futures-ws-2021-07-22.ndjson", "spot-ws-2021-08-14.ndjson", "spot-ws-2021-10-12.ndjson"}

// readLines returns the non-empty lines of a shared file.
func readLines(tb testing.TB, name string) [][]byte {
	tb.Helper()
	f, err := os.Open(sharedFile(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) > 0 {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// testSymbols covers every symbol in the shared recordings and the hand-written frames.
var testSymbols = []string{"SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT", "NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR",
	"FTMUSDT", "SXPBTC", "BADGERBTC", "XMRBTC", "BTCUSDT"}

const (
	futuresFrame = `{"stream":"ctkusdt@aggTrade","data":{"e":"aggTrade","E":1626992741575,"a":16599292,"s":"CTKUSDT","p":"1.01100","q":"10","f":23961322,"l":23961322,"T":1626992741421,"m":false}}`
	spotFrame    = `{"stream":"ftmusdt@aggTrade","data":{"e":"aggTrade","E":1628952396573,"s":"FTMUSDT","a":31718372,"p":"0.33993000","q":"99.90000000","f":38248910,"l":38248910,"T":1628952396572,"m":true,"M":true}}`
	bareSpot     = `{"e":"aggTrade","E":1628952396573,"s":"FTMUSDT","a":31718372,"p":"0.33993000","q":"99.90000000","f":38248910,"l":38248912,"T":1628952396572,"m":true,"M":true}`
	depthFrame   = `{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512568,"s":"NKNUSDT","U":499869753,"u":499869754,"b":[["0.35170000","4265.00000000"]],"a":[["0.35290000","10968.00000000"]]}}`
	// spotReordered is spotFrame off the canonical layout: keys reordered and
	// whitespace added, as a proxy or a re-encoding capture would send it.
	spotReordered = `{ "data": { "e": "aggTrade", "s": "FTMUSDT", "E": 1628952396573, "a": 31718372, "p": "0.33993000", "q": "99.90000000", "f": 38248910, "l": 38248910, "T": 1628952396572, "m": true, "M": true }, "stream": "ftmusdt@aggTrade" }`
	spotBook      = `{"stream":"nknusdt@bookTicker","data":{"u":499869768,"s":"NKNUSDT","b":"0.35210000","B":"672.00000000","a":"0.35260000","A":"3199.00000000"}}`
)

// bareSpotRange is bareSpot (canonical) with the trade id range f..l.
func bareSpotRange(f, l string) string {
	return `{"e":"aggTrade","E":1628952396573,"s":"FTMUSDT","a":31718372,"p":"0.33993000","q":"99.90000000","f":` + f + `,"l":` + l + `,"T":1628952396572,"m":true,"M":true}`
}

// reorderedRange is spotReordered (off the canonical layout) with the trade id range f..l.
func reorderedRange(f, l string) string {
	return `{ "data": { "e": "aggTrade", "s": "FTMUSDT", "E": 1628952396573, "a": 31718372, "p": "0.33993000", "q": "99.90000000", "l": ` + l + `, "f": ` + f + `, "T": 1628952396572, "m": true }, "stream": "ftmusdt@aggTrade" }`
}

// checkTrade fails unless tr, which a decoder accepted, keeps the Trade
// invariants whatever the input: the checks -tags invariants makes build panic on.
func checkTrade(t *testing.T, tr Trade, input []byte) {
	t.Helper()
	if n := tr.Count(); n < 1 || n > maxTradeSpan || tr.Price == 0 || tr.Qty == 0 ||
		tr.TradeTime <= 0 || tr.TradeTime >= maxTimestamp || tr.EventTime <= 0 || tr.EventTime >= maxTimestamp {
		t.Fatalf("accepted an invalid trade %+v (count %d) from %q", tr, tr.Count(), input)
	}
}
