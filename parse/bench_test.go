package parse

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Benchmarks: every engine on the same frame, side by side.
//
//	go test -run '^$' -bench . -benchmem ./parse/

var sinkTrade Trade

// benchEngines are the engines a benchmark compares. engine=fast and
// engine=auto are Decoders: on a frame off the canonical layout they include
// the failed fast-path attempt and the fallback.
func benchEngines(syms *SymbolTable) []namedEngine {
	s := syms.Load()
	engines := []namedEngine{
		{"auto", NewDecoder(Config{Engine: EngineAuto}, syms).Decode},
		{"fast", NewDecoder(Config{Engine: EngineFast}, syms).Decode},
		{"general", func(dst *Trade, f []byte) (Kind, error) { return decodeGeneral(dst, f, s) }},
	}
	if SIMDSupported() {
		engines = append(engines, namedEngine{"simd", NewDecoder(Config{Engine: EngineSIMD}, syms).Decode})
	}
	return append(engines, namedEngine{"std", NewDecoder(Config{Engine: EngineStd}, syms).Decode})
}

func BenchmarkDecode(b *testing.B) {
	syms := NewSymbolTable(testSymbols...)
	frames := []struct{ name, frame string }{
		{"frame=spot", spotFrame},
		{"frame=spotReordered", spotReordered},
		{"frame=futures", futuresFrame},
		{"frame=depth", depthFrame},
		{"frame=spotBookTicker", spotBook},
	}
	for _, fr := range frames {
		frame := []byte(fr.frame)
		for _, e := range benchEngines(syms) {
			b.Run(fr.name+"/engine="+e.name, func(b *testing.B) {
				b.SetBytes(int64(len(frame)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := e.decode(&sinkTrade, frame); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
			})
		}
	}
	b.Run("frame=spot/engine=encodingJSONStruct", func(b *testing.B) {
		// naive twin: what a typical client does (struct, float-free strings)
		type aggTrade struct {
			Ev string `json:"e"` // without it "e" would fill E: encoding/json matches keys case-insensitively
			E  int64  `json:"E"`
			S  string `json:"s"`
			A  int64  `json:"a"`
			P  string `json:"p"`
			Q  string `json:"q"`
			F  int64  `json:"f"`
			L  int64  `json:"l"`
			T  int64  `json:"T"`
			M  bool   `json:"m"`
		}
		var env struct {
			Stream string   `json:"stream"`
			Data   aggTrade `json:"data"`
		}
		frame := []byte(spotFrame)
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			if err := json.Unmarshal(frame, &env); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// offCanonical returns frames off the canonical layout padded to about n
// bytes: shape=depth is a depthUpdate with reordered keys and whitespace,
// shape=markPriceArr a compact all-market array stream (!markPrice@arr), whose
// "data" array the fast path never takes.
func offCanonical(shape string, n int) []byte {
	var sb strings.Builder
	head, item, sep, tail := `{ "stream": "nknusdt@depth@100ms", "data": { "E": 1633998512568, "e": "depthUpdate", "s": "NKNUSDT", "U": 499869753, "u": 499869754, "a": [], "b": [`,
		`["0.35170000", "4265.00000000"]`, ", ", "] } }"
	if shape == "markPriceArr" {
		head, item, sep, tail = `{"stream":"!markPrice@arr","data":[`,
			`{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}`, ",", "]}"
	}
	sb.WriteString(head)
	for i := 0; i == 0 || sb.Len()+len(sep)+len(item)+len(tail) <= n; i++ {
		if i > 0 {
			sb.WriteString(sep)
		}
		sb.WriteString(item)
	}
	sb.WriteString(tail)
	return []byte(sb.String())
}

// BenchmarkAutoCrossover measures the general engine against simdjson-go on
// frames off the canonical layout of growing size; it is what autoGeneralMax
// was chosen from.
//
//	go test -run '^$' -bench 'AutoCrossover' -benchmem ./parse/
func BenchmarkAutoCrossover(b *testing.B) {
	if !SIMDSupported() {
		b.Skip("simdjson-go unsupported on this CPU: nothing to compare")
	}
	syms := NewSymbolTable(testSymbols...)
	for _, shape := range []string{"depth", "markPriceArr"} {
		for _, size := range []int{256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 1 << 20} {
			frame := offCanonical(shape, size)
			for _, e := range []namedEngine{
				{"general", func(dst *Trade, f []byte) (Kind, error) { return decodeGeneral(dst, f, syms.Load()) }},
				{"simd", NewDecoder(DefaultConfig(), syms).DecodeSIMD}, // DecodeSIMD ignores MaxFrame
			} {
				b.Run(fmt.Sprintf("shape=%s/size=%d/engine=%s", shape, size, e.name), func(b *testing.B) {
					b.SetBytes(int64(len(frame)))
					b.ReportAllocs()
					for b.Loop() {
						if _, err := e.decode(&sinkTrade, frame); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

func BenchmarkDecodeCSV(b *testing.B) {
	row := []byte("13519807,0.00141342,23.00000000,15373518,15373518,1570752011620,True,True")
	b.SetBytes(int64(len(row)))
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeCSV(&sinkTrade, row, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "trades/s")
}

// BenchmarkExchangeInfo reads the 1.8 MB spot exchangeInfo, the large document
// simdjson-go is kept for, beside encoding/json.
//
//	go test -run '^$' -bench ExchangeInfo -benchmem ./parse/
func BenchmarkExchangeInfo(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("..", "..", "shared", "data", "binance", "spot-exchangeInfo-2021-10-12.json"))
	if err != nil {
		b.Skipf("real Binance data not available: %v", err)
	}
	for _, e := range []struct {
		name string
		f    func([]byte) ([]SymbolInfo, error)
	}{{"simd", exchangeInfoSIMD}, {"std", exchangeInfoStd}} {
		if e.name == "simd" && !SIMDSupported() {
			continue
		}
		b.Run("engine="+e.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if infos, err := e.f(body); err != nil || len(infos) != 1695 {
					b.Fatalf("%d symbols, %v", len(infos), err)
				}
			}
		})
	}
}
