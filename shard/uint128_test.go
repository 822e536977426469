package shard

import (
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

// bigDecimal is the naive twin of Uint128.AppendDecimal.
func bigDecimal(v *big.Int, scale int) string {
	s := v.String()
	if scale == 0 {
		return s
	}
	for len(s) <= scale {
		s = "0" + s
	}
	i, f := s[:len(s)-scale], strings.TrimRight(s[len(s)-scale:], "0")
	if f == "" {
		return i
	}
	return i + "." + f
}

func u128Big(x Uint128) *big.Int {
	v := new(big.Int).SetUint64(x.Hi)
	v.Lsh(v, 64)
	return v.Or(v, new(big.Int).SetUint64(x.Lo))
}

func TestUint128(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	max128 := new(big.Int).Lsh(big.NewInt(1), 128)
	vals := []Uint128{{}, {Lo: 1}, {Lo: 10}, {Lo: 100_000_000}, {Lo: ^uint64(0)}, {Hi: 1}, MaxUint128, {Hi: 1 << 63}}
	for range 2000 {
		switch r.IntN(3) {
		case 0:
			vals = append(vals, Uint128{Lo: r.Uint64() >> r.UintN(64)})
		case 1:
			vals = append(vals, Uint128{Hi: r.Uint64() >> r.UintN(64), Lo: r.Uint64()})
		default:
			vals = append(vals, Mul64(r.Uint64()>>r.UintN(64), r.Uint64()>>r.UintN(64)))
		}
	}
	for i, x := range vals {
		bx := u128Big(x)
		for _, scale := range []int{0, 1, 8, 16, 19, 20, 38, 39} {
			if got, want := string(x.AppendDecimal(nil, scale)), bigDecimal(bx, scale); got != want {
				t.Fatalf("%v.AppendDecimal(%d) = %s, want %s", x, scale, got, want)
			}
		}
		y := vals[(i*7+3)%len(vals)]
		by := u128Big(y)
		sum, ov := x.Add(y)
		bs := new(big.Int).Add(bx, by)
		if wantOv := bs.Cmp(max128) >= 0; ov != wantOv || u128Big(sum).Cmp(new(big.Int).Mod(bs, max128)) != 0 {
			t.Fatalf("%v + %v = %v,%v", x, y, sum, ov)
		}
		sum, ov = x.Add64(y.Lo)
		bs = new(big.Int).Add(bx, new(big.Int).SetUint64(y.Lo))
		if wantOv := bs.Cmp(max128) >= 0; ov != wantOv || u128Big(sum).Cmp(new(big.Int).Mod(bs, max128)) != 0 {
			t.Fatalf("%v + %d = %v,%v", x, y.Lo, sum, ov)
		}
		if got, want := x.Cmp(y), bx.Cmp(by); got != want {
			t.Fatalf("Cmp(%v, %v) = %d, want %d", x, y, got, want)
		}
		p := Mul64(x.Lo, y.Lo)
		if u128Big(p).Cmp(new(big.Int).Mul(new(big.Int).SetUint64(x.Lo), new(big.Int).SetUint64(y.Lo))) != 0 {
			t.Fatalf("Mul64(%d, %d) = %v", x.Lo, y.Lo, p)
		}
	}
	if s := MaxUint128.String(); s != "340282366920938463463374607431768211455" {
		t.Fatal(s)
	}
	if s := (Uint128{Lo: 5}).AppendDecimal(nil, 16); string(s) != "0.0000000000000005" {
		t.Fatal(string(s))
	}
}

func TestUint128AppendAllocs(t *testing.T) {
	buf := make([]byte, 0, 64)
	x := MaxUint128
	if n := testing.AllocsPerRun(100, func() { buf = x.AppendDecimal(buf[:0], 16) }); n != 0 {
		t.Fatalf("AppendDecimal allocates %v", n)
	}
}
