package parse

import (
	"github.com/klauspost/cpuid/v2"
	"github.com/minio/simdjson-go"
)

// Engine selects how a Decoder parses frames.
type Engine uint8

// Engines.
const (
	// EngineAuto runs the fast path; frames off the canonical layout go to
	// the pure-Go general path up to 64 KiB (autoGeneralMax), and above that
	// to simdjson-go when the CPU supports it.
	EngineAuto Engine = iota
	// EngineFast runs the fast path and falls back to the pure-Go general path.
	EngineFast
	// EngineSIMD parses every frame with simdjson-go (pure-Go general path
	// when the CPU lacks AVX2 or CLMUL).
	EngineSIMD
	// EngineStd parses every frame with encoding/json (allocates; reference).
	EngineStd
)

func (e Engine) String() string {
	switch e {
	case EngineAuto:
		return "auto"
	case EngineFast:
		return "fast"
	case EngineSIMD:
		return "simd"
	case EngineStd:
		return "std"
	}
	return "invalid"
}

// Config configures a Decoder. The zero value works like DefaultConfig.
type Config struct {
	MaxFrame int    // frames longer than this fail with ErrTooLarge; <= 0 means 64 KiB
	Engine   Engine // EngineAuto by default
}

// DefaultMaxFrame is the default Config.MaxFrame.
const DefaultMaxFrame = 64 << 10

// DefaultConfig returns the default configuration.
func DefaultConfig() Config { return Config{MaxFrame: DefaultMaxFrame, Engine: EngineAuto} }

// autoGeneralMax is the largest off-canonical frame EngineAuto hands to the
// general engine rather than to simdjson-go. Measured with BenchmarkDecode and
// BenchmarkAutoCrossover (AMD EPYC, 2 shared cores, noisy): on a reordered
// aggTrade the general engine takes ~1.0 µs and no allocation, simdjson-go
// ~1.2-1.5 µs and one; on depth frames simdjson-go leads by up to 25 % around
// 4 KiB and ties from 16 KiB to 1 MiB; on all-market arrays (!markPrice@arr,
// the large frames that do miss the fast path) the general engine is 1.6-2.4x
// faster at every size up to 1 MiB. No size pays for simdjson-go's
// allocation, so the threshold is DefaultMaxFrame: the default Decoder never
// allocates on a fallback, and simdjson-go only sees frames a raised MaxFrame
// lets in.
const autoGeneralMax = DefaultMaxFrame

var simdSupported = simdjson.SupportedCPU() && cpuid.CPU.Supports(cpuid.AVX2, cpuid.CLMUL)

// SIMDSupported reports whether simdjson-go can run on this CPU (AVX2 and CLMUL).
func SIMDSupported() bool { return simdSupported }
