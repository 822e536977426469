package parse

import (
	"github.com/klauspost/cpuid/v2"
	"github.com/minio/simdjson-go"
)

// Engine selects how a Decoder parses frames.
type Engine uint8

// Engines.
const (
	// EngineAuto runs the fast path and falls back to simdjson-go for frames
	// off the canonical layout when the CPU supports it, else to the pure-Go
	// general path.
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

var simdSupported = simdjson.SupportedCPU() && cpuid.CPU.Supports(cpuid.AVX2, cpuid.CLMUL)

// SIMDSupported reports whether simdjson-go can run on this CPU (AVX2 and CLMUL).
func SIMDSupported() bool { return simdSupported }
