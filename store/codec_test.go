package store

import (
	"math/rand/v2"
	"testing"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// TestStoreDecimalCodec round-trips decimals through their stored text and rejects
// what is not an exact decimal of the column's scale.
func TestStoreDecimalCodec(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []shard.Uint128{{}, {Lo: 1}, {Lo: 100_000_000}, shard.MaxUint128, {Hi: 1}, {Hi: ^uint64(0) >> 1, Lo: 12345}}
	for range 2000 {
		values = append(values, shard.Uint128{Hi: r.Uint64() >> r.UintN(64), Lo: r.Uint64() >> r.UintN(64)})
	}
	for _, v := range values {
		for _, scale := range []int{0, 8, 16} {
			text := v.AppendDecimal(nil, scale)
			got, err := parseUint128(text, scale)
			if err != nil || got != v {
				t.Fatalf("%s at scale %d: got %v, %v; want %v", text, scale, got, err, v)
			}
		}
		if v.Hi == 0 {
			d := parse.Decimal(v.Lo)
			got, err := parseDecimal(parse.AppendDecimal(nil, d))
			if err != nil || got != d {
				t.Fatalf("price %s: %v, %v", d, got, err)
			}
		}
	}
	for _, c := range []struct {
		s     string
		scale int
		want  shard.Uint128
	}{{"1.50000000000", 1, shard.Uint128{Lo: 15}}, {"0.0163", 8, shard.Uint128{Lo: 1_630_000}}, {"12", 8, shard.Uint128{Lo: 1_200_000_000}}} {
		if got, err := parseUint128([]byte(c.s), c.scale); err != nil || got != c.want {
			t.Errorf("%q: %v, %v", c.s, got, err)
		}
	}
	for _, bad := range []string{"", ".", "1.", ".5", "-1", "1e5", "0x10", "1.2.3", "1.000000001", "340282366920938463463374607431768211456", " 1"} {
		if v, err := parseUint128([]byte(bad), 8); err == nil {
			t.Errorf("%q parsed as %v", bad, v)
		}
	}
	if _, err := parseDecimal([]byte("184467440737.09551616")); err == nil {
		t.Error("a price beyond parse.Decimal parsed")
	}
}
