package shard

import "math/bits"

// Uint128 is an unsigned 128-bit integer, used for exact volume sums.
type Uint128 struct{ Hi, Lo uint64 }

// MaxUint128 is 2^128-1, the value an overflowed sum saturates to.
var MaxUint128 = Uint128{Hi: ^uint64(0), Lo: ^uint64(0)}

// Mul64 returns the full 128-bit product a*b.
func Mul64(a, b uint64) Uint128 {
	hi, lo := bits.Mul64(a, b)
	return Uint128{Hi: hi, Lo: lo}
}

// Add returns x+y modulo 2^128 and whether it overflowed.
func (x Uint128) Add(y Uint128) (Uint128, bool) {
	lo, c := bits.Add64(x.Lo, y.Lo, 0)
	hi, c := bits.Add64(x.Hi, y.Hi, c)
	return Uint128{Hi: hi, Lo: lo}, c != 0
}

// Add64 returns x+y modulo 2^128 and whether it overflowed.
func (x Uint128) Add64(y uint64) (Uint128, bool) {
	lo, c := bits.Add64(x.Lo, y, 0)
	hi, c := bits.Add64(x.Hi, 0, c)
	return Uint128{Hi: hi, Lo: lo}, c != 0
}

// Cmp returns -1, 0 or +1 as x is less than, equal to or greater than y.
func (x Uint128) Cmp(y Uint128) int {
	switch {
	case x.Hi < y.Hi:
		return -1
	case x.Hi > y.Hi:
		return 1
	case x.Lo < y.Lo:
		return -1
	case x.Lo > y.Lo:
		return 1
	}
	return 0
}

// IsZero reports whether x == 0.
func (x Uint128) IsZero() bool { return x.Hi|x.Lo == 0 }

// AppendDecimal appends x / 10^scale in its shortest exact form: no trailing
// fractional zeros, no decimal point for whole numbers ("0.0163", "12", "0").
// scale must be in [0, 39].
func (x Uint128) AppendDecimal(dst []byte, scale int) []byte {
	const maxDigits = 39 // 2^128-1 has 39 digits
	if scale < 0 || scale > maxDigits {
		panic("BUG: Uint128.AppendDecimal scale out of range")
	}
	// Digits, least significant first written from the end, zero-padded to
	// maxDigits+1 so that a leading "0." is always available.
	var buf [maxDigits + 1]byte
	for i := range buf {
		buf[i] = '0'
	}
	i := len(buf)
	const chunk = 10_000_000_000_000_000_000 // 10^19
	for !x.IsZero() {
		var r uint64
		x.Hi, r = x.Hi/chunk, x.Hi%chunk
		x.Lo, r = bits.Div64(r, x.Lo, chunk)
		for j := 0; j < 19 && i > 0; j++ {
			i--
			buf[i] = byte('0' + r%10)
			r /= 10
		}
	}
	for i = 0; i < len(buf) && buf[i] == '0'; i++ {
	}
	point := len(buf) - scale
	intStart := min(i, point-1)
	dst = append(dst, buf[intStart:point]...)
	end := len(buf)
	for end > point && buf[end-1] == '0' {
		end--
	}
	if end > point {
		dst = append(dst, '.')
		dst = append(dst, buf[point:end]...)
	}
	return dst
}

// String formats x as a decimal integer.
func (x Uint128) String() string { return string(x.AppendDecimal(nil, 0)) }
