package store

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// Volumes are stored with their scales: base volumes at parse.Scale (8), quote
// volumes, exact sums of price*qty, at twice that (16).
const (
	volumeScale = parse.Scale
	quoteScale  = 2 * parse.Scale
)

var errDecimal = errors.New("not an exact decimal")

// parseDecimal parses what parse.AppendDecimal writes ("0.0163", "12") into a
// parse.Decimal, exactly: more than parse.Scale fractional digits or a value past
// the type's range is an error, never rounded.
func parseDecimal(s []byte) (parse.Decimal, error) {
	v, err := parseUint128(s, parse.Scale)
	if err != nil {
		return 0, err
	}
	if v.Hi != 0 {
		return 0, fmt.Errorf("cannot parse price %q: out of range: %w", s, errDecimal)
	}
	return parse.Decimal(v.Lo), nil
}

// parseUint128 parses a non-negative decimal into an integer scaled by 10^scale,
// exactly. Trailing fractional zeros past scale are accepted ("1.50000000" at scale 1).
func parseUint128(s []byte, scale int) (shard.Uint128, error) {
	var x shard.Uint128
	if len(s) == 0 {
		return x, fmt.Errorf("cannot parse decimal: empty: %w", errDecimal)
	}
	frac := -1
	digits := 0
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
			if frac >= 0 {
				if frac == scale {
					if c != '0' {
						return x, fmt.Errorf("cannot parse decimal %q: more than %d fractional digits: %w", s, scale, errDecimal)
					}
					continue
				}
				frac++
			}
			var ok bool
			if x, ok = mul10Add(x, uint64(c-'0')); !ok {
				return x, fmt.Errorf("cannot parse decimal %q: beyond 128 bits: %w", s, errDecimal)
			}
			digits++
		case c == '.' && frac < 0 && i > 0:
			frac = 0
		default:
			return x, fmt.Errorf("cannot parse decimal %q: %w", s, errDecimal)
		}
	}
	if digits == 0 || s[len(s)-1] == '.' {
		return x, fmt.Errorf("cannot parse decimal %q: %w", s, errDecimal)
	}
	for frac = max(frac, 0); frac < scale; frac++ {
		var ok bool
		if x, ok = mul10Add(x, 0); !ok {
			return x, fmt.Errorf("cannot parse decimal %q: beyond 128 bits: %w", s, errDecimal)
		}
	}
	return x, nil
}

// mul10Add returns x*10+d and whether it fit in 128 bits.
func mul10Add(x shard.Uint128, d uint64) (shard.Uint128, bool) {
	hiH, hiL := bits.Mul64(x.Hi, 10)
	loH, loL := bits.Mul64(x.Lo, 10)
	hi, c := bits.Add64(hiL, loH, 0)
	if hiH != 0 || c != 0 {
		return x, false
	}
	lo, c := bits.Add64(loL, d, 0)
	hi, c2 := bits.Add64(hi, 0, c)
	return shard.Uint128{Hi: hi, Lo: lo}, c2 == 0
}
