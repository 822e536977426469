package ring

import (
	"errors"
	"fmt"
	"time"
)

// ErrConfig is wrapped by Config.Validate for every invalid setting.
var ErrConfig = errors.New("invalid ring config")

// MaxSize is the largest ring, in slots.
const MaxSize = 1 << 30

// Config sets a ring's size and how its two sides wait. The zero Config is valid:
// 4096 slots, and waiters that park at once without spinning or yielding.
type Config struct {
	// Size is the number of slots, rounded up to a power of two; 0 means 4096.
	Size int
	// Spin is how many times a waiter polls before it starts yielding; 0 means
	// none. Spinning buys latency with CPU, so keep it small on busy machines.
	Spin int
	// Yield is how many runtime.Gosched rounds a waiter makes after spinning and
	// before it parks; 0 means none. A parked goroutine uses no CPU.
	Yield int
	// YieldFor keeps a waiter yielding, after its Yield rounds, until this long
	// has passed since it began to wait; 0 means no such time. A busy pipeline
	// whose batches come closer than YieldFor never pays for a park and a wake-up
	// (tens of microseconds each here); an idle one still parks after YieldFor.
	// The phase adapts (see Waiter): a waiter whose last waits found no work
	// within YieldFor skips it and parks at once, until work comes within
	// YieldFor of a wait again.
	YieldFor time.Duration
	// FixedYield makes every wait yield for YieldFor before it parks, idle or
	// not: the behaviour before the waiter adapted, kept for comparison.
	FixedYield bool
}

// DefaultConfig returns the settings klagg uses: 4096 slots, 100 spins, 10 yields.
func DefaultConfig() Config {
	return Config{Size: 4096, Spin: 100, Yield: 10}
}

// Validate reports the first invalid setting, wrapping ErrConfig.
func (c Config) Validate() error {
	switch {
	case c.Size < 0 || c.Size > MaxSize:
		return fmt.Errorf("cannot use Size %d (want 0..%d): %w", c.Size, MaxSize, ErrConfig)
	case c.Spin < 0:
		return fmt.Errorf("cannot use Spin %d (want >= 0): %w", c.Spin, ErrConfig)
	case c.Yield < 0:
		return fmt.Errorf("cannot use Yield %d (want >= 0): %w", c.Yield, ErrConfig)
	case c.YieldFor < 0:
		return fmt.Errorf("cannot use YieldFor %v (want >= 0): %w", c.YieldFor, ErrConfig)
	}
	return nil
}

// slots returns Size with the default applied, rounded up to a power of two.
func (c Config) slots() int {
	n := c.Size
	if n == 0 {
		n = DefaultConfig().Size
	}
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

func mustValidate(c Config) {
	if err := c.Validate(); err != nil {
		panic("BUG: ring: " + err.Error() + " (call Config.Validate before New)")
	}
}
