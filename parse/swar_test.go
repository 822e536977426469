package parse

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// The SWAR helpers against scalar twins, byte by byte.

// scanPlainStringScalar is scanPlainString one byte at a time.
func scanPlainStringScalar(b []byte, i int) int {
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

// interesting are the bytes at the edges of every class the helpers tell apart.
var interesting = []byte{0, 1, 0x1f, 0x20, '!', '"', '#', '/', '0', '1', '5', '8', '9', ':', '\\', ']', 'A', 'z', 0x7f, 0x80, 0xaf, 0xb0, 0xb9, 0xba, 0xdc, 0xff}

// randomWord returns 8 bytes drawn mostly from interesting.
func randomWord(r *rand.Rand) []byte {
	w := make([]byte, 8)
	for i := range w {
		if r.IntN(4) == 0 {
			w[i] = byte(r.IntN(256))
		} else {
			w[i] = interesting[r.IntN(len(interesting))]
		}
	}
	return w
}

func TestNonDigits(t *testing.T) {
	check := func(w []byte) {
		t.Helper()
		m := nonDigits(binary.LittleEndian.Uint64(w))
		for i, c := range w {
			if got := m>>(8*i+7)&1 == 1; got != !isDigit(c) {
				t.Fatalf("nonDigits(%q) byte %d (%#x): marked %v", w, i, c, got)
			}
			if m>>(8*i)&0x7f != 0 {
				t.Fatalf("nonDigits(%q) sets low bits: %#x", w, m)
			}
		}
		run := 0
		for run < 8 && isDigit(w[run]) {
			run++
		}
		if got := digitRun(binary.LittleEndian.Uint64(w)); got != run {
			t.Fatalf("digitRun(%q) = %d, want %d", w, got, run)
		}
	}
	for pos := range 8 {
		for c := range 256 {
			w := []byte("12345678")
			w[pos] = byte(c)
			check(w)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		check(randomWord(r))
	}
}

func TestDigitsValue(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200_000 {
		n := r.IntN(9)
		w := randomWord(r)
		var want uint64
		for i := range n {
			w[i] = byte('0' + r.IntN(10))
			want = want*10 + uint64(w[i]-'0')
		}
		if got := digitsValue(binary.LittleEndian.Uint64(w), n); got != want {
			t.Fatalf("digitsValue(%q, %d) = %d, want %d", w, n, got, want)
		}
	}
	if got := digitsValue(binary.LittleEndian.Uint64([]byte("99999999")), 8); got != 99_999_999 {
		t.Fatalf("digitsValue(99999999) = %d", got)
	}
}

func TestScanPlainString(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 100_000 {
		n := r.IntN(40)
		b := make([]byte, n)
		for i := range b {
			// mostly plain bytes, so the special one lands anywhere
			if r.IntN(12) == 0 {
				b[i] = interesting[r.IntN(len(interesting))]
			} else {
				b[i] = byte('A' + r.IntN(26))
			}
		}
		for i := -1; i <= n+1; i++ {
			if got, want := scanPlainString(b, i), scanPlainStringScalar(b, i); got != want {
				t.Fatalf("scanPlainString(%q, %d) = %d, want %d", b, i, got, want)
			}
		}
	}
}

// TestUintAt: uintAt agrees with parseInt wherever it answers, and answers on
// every integer of 1 to 15 digits without a leading zero.
func TestUintAt(t *testing.T) {
	check := func(s string) {
		t.Helper()
		b := []byte(s + `,"x":1234567890123456789}`)
		v, next, ok := uintAt(b, 0)
		end := 0
		for end < len(s) && isDigit(s[end]) {
			end++
		}
		want, err := parseInt(b[:end])
		common := end >= 1 && end <= 15 && (end == 1 || s[0] != '0')
		if ok != common {
			t.Fatalf("uintAt(%q) ok %v, want %v", s, ok, common)
		}
		if ok && (err != nil || int64(v) != want || next != end) {
			t.Fatalf("uintAt(%q) = %d, %d; parseInt %d, %v", s, v, next, want, err)
		}
	}
	for _, s := range []string{"0", "1", "9", "10", "01", "00", "12345678", "123456789", "1626992741575", "999999999999999", "9999999999999999",
		"10000000000000000", "0123", "", "-1", "1.5", "1e3", "99999999"} {
		check(s)
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range 100_000 {
		n := r.IntN(20)
		var sb strings.Builder
		for range n {
			sb.WriteByte(byte('0' + r.IntN(10)))
		}
		if r.IntN(4) == 0 {
			sb.WriteByte(interesting[r.IntN(len(interesting))])
		}
		check(sb.String())
	}
	if _, _, ok := uintAt([]byte("123456789012345"), 0); ok {
		t.Fatal("uintAt read with fewer than 16 bytes left")
	}
}

// TestDecimalAt: decimalAt agrees with parseDecimal wherever it answers, and
// answers on every price and quantity of the common shape.
func TestDecimalAt(t *testing.T) {
	check := func(s string) {
		t.Helper()
		b := []byte(s + `","f":1234567890123,"l":1}`)
		d, next, ok := decimalAt(b, 0)
		j := bytes.IndexByte(b, '"')
		want, err := parseDecimal(b[:j])
		whole, frac, hasPoint := strings.Cut(s, ".")
		common := err == nil && len(whole) <= 11 && (!hasPoint || len(frac) <= 8) && !strings.ContainsAny(s, `"\`)
		if ok != common {
			t.Fatalf("decimalAt(%q) ok %v, want %v (parseDecimal %v, %v)", s, ok, common, want, err)
		}
		if ok && (d != want || next != j+1) {
			t.Fatalf("decimalAt(%q) = %v, %d; parseDecimal %v, quote at %d", s, d, next, want, j)
		}
	}
	for _, s := range []string{"0", "0.5", "1.01100", "0.33993000", "99.90000000", "47123.45", "12345678.00", "99999999999",
		"99999999999.99999999", "100000000000", "0.000000001", "1.000000000", "00.5", "01", ".5", "5.", "-1", "1e3", "1.2.3",
		"0.00000000", "0", "", "12345678", "123456789", "1234567890.1"} {
		check(s)
	}
	r := rand.New(rand.NewPCG(9, 10))
	digits := func(sb *strings.Builder, n int) {
		for range n {
			sb.WriteByte(byte('0' + r.IntN(10)))
		}
	}
	for range 200_000 {
		var sb strings.Builder
		digits(&sb, r.IntN(14))
		if r.IntN(5) != 0 {
			sb.WriteByte('.')
			digits(&sb, r.IntN(11))
		}
		if r.IntN(8) == 0 {
			sb.WriteByte(interesting[r.IntN(len(interesting))])
		}
		if s := sb.String(); !strings.Contains(s, `"`) {
			check(s)
		}
	}
}

func TestShortSymbols(t *testing.T) {
	names := []string{"", "A", "BTCUSDT", "ETHUSDT", "1000SHIBUSDT", "BTCUSDT_250328", "ABCDEFGH", "ABCDEFGHI",
		"ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOPQ", "A\x00", "A\x00\x00", "币安人生USDT", strings.Repeat("X", 40)}
	for i := range 3000 {
		names = append(names, "S"+strconv.Itoa(i)+"USDT")
	}
	s := NewSymbols(names)
	for i, name := range names {
		if got, ok := s.Lookup([]byte(name)); !ok || got != uint32(i) {
			t.Fatalf("Lookup(%q) = %d, %v; want %d", name, got, ok, i)
		}
	}
	for _, name := range []string{"B", "BTCUSD", "BTCUSDTT", "A\x00\x00\x00", "ABCDEFGHIJKLMNOPQR", "S3000USDT", "btcusdt", strings.Repeat("X", 39)} {
		if got, ok := s.Lookup([]byte(name)); ok {
			t.Fatalf("Lookup(%q) = %d, want not found", name, got)
		}
	}
	s2 := s.With("NEWUSDT", "BTCUSDT")
	if got, ok := s2.Lookup([]byte("NEWUSDT")); !ok || got != uint32(len(names)) {
		t.Fatalf("With: NEWUSDT = %d, %v", got, ok)
	}
	if _, ok := s.Lookup([]byte("NEWUSDT")); ok {
		t.Fatal("With changed the original table")
	}
	if got, _ := s2.Lookup([]byte("BTCUSDT")); got != 2 {
		t.Fatalf("With moved BTCUSDT to %d", got)
	}
	// symbolAt, as the fast path calls it, on names of every length.
	for i, name := range names {
		frame := []byte(name + `","a":31718372,"p":"0.33993000"}`)
		sym, next, ok := symbolAt(frame, 0, s)
		want := len(name) < shortName && !strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r >= 0x80 })
		if ok != want || ok && (sym != uint32(i) || next != len(name)+1) {
			t.Fatalf("symbolAt(%q) = %d, %d, %v; want %d, %v", name, sym, next, ok, i, want)
		}
	}
}

// TestFastPathTakesRealFrames: every aggTrade frame Binance sent in the
// recordings goes through aggTradeFast, not its exact fallback, and both give
// the same trade.
func TestFastPathTakesRealFrames(t *testing.T) {
	syms := NewSymbols(testSymbols)
	n := 0
	for _, name := range ndjsonFiles {
		for _, line := range readLines(t, name) {
			const head = `"data":{"e":"aggTrade"`
			k := bytes.Index(line, []byte(head))
			if k < 0 {
				continue
			}
			n++
			var fast, exact Trade
			if !aggTradeFast(&fast, line, k+len(head), true, syms) {
				t.Fatalf("aggTradeFast left %s to the exact path", line)
			}
			if kind, err := decodeAggTradeExact(&exact, line, k+len(head), true, syms); kind != KindAggTrade || err != nil || exact != fast {
				t.Fatalf("exact path (%v, %v) %+v, fast %+v on %s", kind, err, exact, fast, line)
			}
		}
	}
	for _, f := range []string{futuresFrame, spotFrame} {
		var tr Trade
		i := strings.Index(f, `"aggTrade"`) + len(`"aggTrade"`)
		if !aggTradeFast(&tr, []byte(f), i, true, syms) {
			t.Fatalf("aggTradeFast left the benchmark frame %s to the exact path", f)
		}
	}
	t.Logf("%d real aggTrade frames", n)
}

// FuzzNumbers holds the SWAR number readers to the scalar ones: wherever
// decimalAt or uintAt answers, parseDecimal or parseInt gives the same value.
//
//	go test -run '^$' -fuzz '^FuzzNumbers$' -fuzztime 30s ./parse/
func FuzzNumbers(f *testing.F) {
	for _, s := range []string{"0.33993000", "99.90000000", "1.01100", "1626992741575", "00.5", "12345678.12345678", "7", "0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		b := append(append([]byte(nil), s...), `","f":1234567890123456789}`...)
		if d, next, ok := decimalAt(b, 0); ok {
			want, err := parseDecimal(b[:next-1])
			if err != nil || d != want || bytes.IndexByte(b, '"') != next-1 {
				t.Fatalf("decimalAt(%q) = %v, %d; parseDecimal %v, %v", s, d, next, want, err)
			}
		}
		if v, next, ok := uintAt(b, 0); ok {
			want, err := parseInt(b[:next])
			if err != nil || int64(v) != want || isDigit(b[next]) {
				t.Fatalf("uintAt(%q) = %d, %d; parseInt %d, %v", s, v, next, want, err)
			}
		}
	})
}
