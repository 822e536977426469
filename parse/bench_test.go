package parse

import (
	"encoding/json"
	"testing"
)

// Benchmarks: every engine on the same frame, side by side.
//
//	go test -run '^$' -bench . -benchmem ./parse/

var sinkTrade Trade

func BenchmarkDecode(b *testing.B) {
	syms := NewSymbolTable(testSymbols...)
	frames := []struct{ name, frame string }{
		{"frame=spot", spotFrame},
		{"frame=futures", futuresFrame},
		{"frame=depth", depthFrame},
		{"frame=spotBookTicker", spotBook},
	}
	for _, fr := range frames {
		frame := []byte(fr.frame)
		for _, e := range []struct {
			name   string
			engine Engine
		}{{"engine=fast", EngineFast}, {"engine=simd", EngineSIMD}, {"engine=std", EngineStd}} {
			if e.engine == EngineSIMD && !SIMDSupported() {
				continue
			}
			b.Run(fr.name+"/"+e.name, func(b *testing.B) {
				d := NewDecoder(Config{Engine: e.engine}, syms)
				b.SetBytes(int64(len(frame)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := d.Decode(&sinkTrade, frame); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
			})
		}
	}
	b.Run("frame=spot/engine=general", func(b *testing.B) {
		frame := []byte(spotFrame)
		s := syms.Load()
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			decodeGeneral(&sinkTrade, frame, s)
		}
	})
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
