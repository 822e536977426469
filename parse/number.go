package parse

import "math"

// maxIntDigits is the most integer digits a Decimal can hold (184467440737).
const maxIntDigits = 12

var pow10 = [...]uint64{1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000}

// parseDecimal parses a price or quantity string (the bytes between the quotes).
// The common shape (at most 11 integer digits, 1..8 fractional digits) is one
// loop; everything else goes to parseDecimalSlow, which also picks the reason.
func parseDecimal(b []byte) (Decimal, error) {
	n := len(b)
	if n == 0 || b[0] == '0' && n > 1 && b[1] != '.' {
		return parseDecimalSlow(b)
	}
	var v uint64
	i := 0
	for ; i < n; i++ {
		c := b[i] - '0'
		if c > 9 {
			break
		}
		v = v*10 + uint64(c)
	}
	if i == 0 || i >= maxIntDigits {
		return parseDecimalSlow(b)
	}
	if i == n {
		return Decimal(v * scaleFactor), nil
	}
	if b[i] != '.' {
		return parseDecimalSlow(b)
	}
	i++
	frac := n - i
	if frac == 0 || frac > Scale {
		return parseDecimalSlow(b)
	}
	for ; i < n; i++ {
		c := b[i] - '0'
		if c > 9 {
			return parseDecimalSlow(b)
		}
		v = v*10 + uint64(c)
	}
	return Decimal(v * pow10[Scale-frac]), nil
}

func parseDecimalSlow(b []byte) (Decimal, error) {
	if len(b) == 0 {
		return 0, ErrBadNumber
	}
	if b[0] == '-' {
		return 0, ErrNegative
	}
	i := 0
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	intDigits := i
	fracStart, fracEnd := i, i
	if i < len(b) {
		if b[i] != '.' {
			return 0, ErrBadNumber
		}
		i++
		fracStart = i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		fracEnd = i
		if i != len(b) || fracEnd == fracStart {
			return 0, ErrBadNumber
		}
	}
	if intDigits == 0 || intDigits > 1 && b[0] == '0' {
		return 0, ErrBadNumber
	}
	if intDigits > maxIntDigits {
		return 0, ErrTooManyDigits
	}
	for _, c := range b[min(fracStart+Scale, fracEnd):fracEnd] {
		if c != '0' {
			return 0, ErrTooManyDigits
		}
	}
	var v uint64
	for _, c := range b[:intDigits] {
		v = v*10 + uint64(c-'0')
	}
	hi, lo := mul64(v, scaleFactor)
	if hi != 0 {
		return 0, ErrOutOfRange
	}
	var f uint64
	k := 0
	for _, c := range b[fracStart:min(fracStart+Scale, fracEnd)] {
		f = f*10 + uint64(c-'0')
		k++
	}
	f *= pow10[Scale-k]
	if lo > math.MaxUint64-f {
		return 0, ErrOutOfRange
	}
	return Decimal(lo + f), nil
}

func mul64(a, b uint64) (hi, lo uint64) {
	const mask32 = 1<<32 - 1
	a0, a1 := a&mask32, a>>32
	b0, b1 := b&mask32, b>>32
	w0 := a0 * b0
	t := a1*b0 + w0>>32
	w1 := t&mask32 + a0*b1
	hi = a1*b1 + t>>32 + w1>>32
	lo = a * b
	return
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseInt parses a JSON number token that must be a non-negative integer
// fitting int64. "-0" is 0. A fraction or exponent is ErrBadNumber, a
// negative value ErrNegative, a value above MaxInt64 ErrOutOfRange.
func parseInt(b []byte) (int64, error) {
	if n := len(b); n > 0 && n < 19 && (b[0] != '0' || n == 1) {
		var v int64
		for _, c := range b {
			c -= '0'
			if c > 9 {
				return parseIntSlow(b)
			}
			v = v*10 + int64(c)
		}
		return v, nil
	}
	return parseIntSlow(b)
}

func parseIntSlow(b []byte) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	d := b
	if neg {
		d = b[1:]
	}
	if len(d) == 0 || len(d) > 1 && d[0] == '0' {
		return 0, ErrBadNumber
	}
	zero := true
	for _, c := range d {
		if !isDigit(c) {
			return 0, ErrBadNumber
		}
		if c != '0' {
			zero = false
		}
	}
	if zero {
		return 0, nil
	}
	if neg {
		return 0, ErrNegative
	}
	var v uint64
	for _, c := range d {
		x := uint64(c - '0')
		if v > (math.MaxInt64-x)/10 {
			return 0, ErrOutOfRange
		}
		v = v*10 + x
	}
	return int64(v), nil
}
