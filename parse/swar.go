package parse

import (
	"encoding/binary"
	"math/bits"
)

// SWAR (SIMD within a register) helpers for the fast path: they look at eight
// bytes of a frame at once through one little-endian load, so the first byte
// of the eight is the lowest byte of the word. They are pure Go
// (encoding/binary compiles to one unaligned load on amd64 and arm64): no
// unsafe. Every helper is checked byte by byte against a scalar twin in
// swar_test.go.

const (
	ones8 = 0x0101010101010101
	high8 = 0x8080808080808080
)

// load8 returns b[i:i+8] as a little-endian word; the caller has checked that
// the eight bytes exist.
func load8(b []byte, i int) uint64 { return binary.LittleEndian.Uint64(b[i : i+8]) }

// nonDigits marks, with the high bit of each byte, the bytes of x that are
// not ASCII digits. No carry crosses bytes, so every mark is exact.
func nonDigits(x uint64) uint64 {
	y := x &^ high8                  // low 7 bits of each byte: y + 0x50 and y + 0x46 cannot carry out
	above9 := y + 0x4646464646464646 // high bit set iff y > '9'
	atLeast0 := y + 0x5050505050505050
	return (above9 | ^atLeast0 | x) & high8 // > '9', < '0', or not ASCII
}

// digitRun returns how many of x's bytes, from the first, are ASCII digits (0 to 8).
func digitRun(x uint64) int { return bits.TrailingZeros64(nonDigits(x)) >> 3 }

// digitsValue returns the value of the first n (0 to 8) bytes of x, which are
// ASCII digits, read as a decimal number; later bytes are ignored.
func digitsValue(x uint64, n int) uint64 {
	// Subtracting '0' cannot borrow out of a digit byte, and the bytes after
	// the run are shifted out; the zero bytes shifted in are leading zeros.
	// n == 0 shifts by 64, which Go defines as giving 0.
	x = (x - 0x3030303030303030) << (64 - 8*uint(n))
	x = x*10 + x>>8 // pairs of digits in the even bytes
	const mask = 0x000000FF000000FF
	const mul1 = 100 + 1_000_000<<32
	const mul2 = 1 + 10_000<<32
	return (x&mask*mul1 + (x>>16)&mask*mul2) >> 32
}

// specialBytes marks, with the high bit of each byte, the bytes of x a plain
// string may not hold: the quote, the backslash, control bytes and non-ASCII
// bytes. Only the lowest mark is exact (a borrow may mark a later byte too),
// which is all firstSpecial needs.
func specialBytes(x uint64) uint64 {
	q := x ^ ones8*'"'
	bs := x ^ ones8*'\\'
	return ((q-ones8)&^q | (bs-ones8)&^bs | (x-ones8*0x20)&^x | x) & high8
}

// scanPlainString returns the index of the quote closing the string whose
// contents start at b[i], or -1 when the string holds an escape, a control
// character or a non-ASCII byte, or is not closed. Eight bytes at a time.
func scanPlainString(b []byte, i int) int {
	for ; i >= 0 && i+8 <= len(b); i += 8 {
		if m := specialBytes(load8(b, i)); m != 0 {
			j := i + bits.TrailingZeros64(m)>>3
			if b[j] == '"' {
				return j
			}
			return -1
		}
	}
	for ; i >= 0 && i < len(b); i++ {
		if c := b[i]; !plainByte[c] {
			if c == '"' {
				return i
			}
			return -1
		}
	}
	return -1
}

// plainByte marks the bytes a canonical string may hold: printable ASCII
// except the quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// uintAt reads a JSON integer of 1 to 15 digits without sign or leading zero
// at b[i:], whose next 16 bytes must exist. It returns the value and the index
// after the last digit; ok is false for anything else (no digit, a leading
// zero, 16 digits or more, fewer than 16 bytes left), which the caller hands
// to the exact path.
func uintAt(b []byte, i int) (v uint64, next int, ok bool) {
	if i < 0 || len(b)-i < 16 {
		return 0, i, false
	}
	x := load8(b, i)
	if n := digitRun(x); n < 8 {
		if n == 0 || n > 1 && byte(x) == '0' {
			return 0, i, false
		}
		return digitsValue(x, n), i + n, true
	}
	if byte(x) == '0' {
		return 0, i, false
	}
	y := load8(b, i+8)
	n := digitRun(y)
	if n == 8 {
		return 0, i, false
	}
	return digitsValue(x, 8)*pow10[n] + digitsValue(y, n), i + 8 + n, true
}

// decimalAt reads a price or quantity string whose contents start at b[i] in
// the common shape: 1 to 11 integer digits without a leading zero, then
// nothing or a point and 1 to 8 fractional digits, then the closing quote. It
// returns the Decimal and the index after the quote; ok is false for anything
// else, which the caller hands to parseDecimal for the exact answer.
func decimalAt(b []byte, i int) (d Decimal, next int, ok bool) {
	if i < 0 || len(b)-i < 16 {
		return 0, i, false
	}
	x := load8(b, i)
	var whole uint64
	k := i
	if n := digitRun(x); n < 8 {
		if n == 0 {
			return 0, i, false
		}
		whole, k = digitsValue(x, n), i+n
	} else {
		y := load8(b, i+8)
		n := digitRun(y)
		if n > maxIntDigits-1-8 {
			return 0, i, false
		}
		whole, k = digitsValue(x, 8)*pow10[n]+digitsValue(y, n), i+8+n
	}
	if k-i > 1 && byte(x) == '0' {
		return 0, i, false
	}
	switch b[k] {
	case '"':
		return Decimal(whole * scaleFactor), k + 1, true
	case '.':
	default:
		return 0, i, false
	}
	k++
	if len(b)-k < Scale+1 {
		return 0, i, false
	}
	z := load8(b, k)
	n := digitRun(z)
	if n == 0 || b[k+n] != '"' {
		return 0, i, false
	}
	return Decimal(whole*scaleFactor + digitsValue(z, n)*pow10[Scale-n]), k + n + 1, true
}
