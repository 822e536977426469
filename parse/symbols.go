package parse

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// Symbols is an immutable table mapping symbol names to dense uint32 indices
// and back. Names are matched exactly, byte for byte: Binance's symbols are
// upper-case ("BTCUSDT") in exchangeInfo and in every event's "s", so a frame
// naming "btcusdt" is an unknown symbol, never folded into BTCUSDT. Case folding
// belongs where people type names (command-line flags) or tools make them
// (file names): those callers upper-case before they add or look up. Safe for
// concurrent use.
type Symbols struct {
	index map[string]uint32
	names []string
	// short indexes the names of at most shortName bytes (every symbol Binance
	// lists) by their bytes packed into two words, so the fast path looks a
	// name up with a multiply and a compare or two instead of hashing a
	// string: open addressing, linear probing, at most half full.
	short      []shortSlot
	shortShift uint // 64 - log2(len(short))
}

// shortName is the longest name the short table holds.
const shortName = 16

type shortSlot struct {
	w0, w1 uint64 // the name's bytes, little-endian, zero-padded
	n      uint32 // len(name) + 1; 0 marks an empty slot
	index  uint32
}

// NewSymbols returns a table holding names, as given, in order; a repeated
// name keeps its first index.
func NewSymbols(names []string) *Symbols {
	s := &Symbols{index: make(map[string]uint32, len(names)), names: make([]string, 0, len(names))}
	s.add(names)
	s.buildShort()
	return s
}

// buildShort indexes every short name of s.names in a fresh short table.
func (s *Symbols) buildShort() {
	size, shift := 8, uint(61)
	for size < 2*len(s.names) {
		size, shift = size*2, shift-1
	}
	s.short, s.shortShift = make([]shortSlot, size), shift
	for i, name := range s.names {
		if len(name) > shortName {
			continue
		}
		w0, w1 := packName(name)
		j := shortHash(w0, w1, len(name)) >> shift
		for s.short[j].n != 0 {
			j = (j + 1) & uint64(size-1)
		}
		s.short[j] = shortSlot{w0: w0, w1: w1, n: uint32(len(name)) + 1, index: uint32(i)}
	}
}

// packName returns the first 16 bytes of name as two little-endian words, zero-padded.
func packName[S string | []byte](name S) (w0, w1 uint64) {
	var buf [shortName]byte
	copy(buf[:], name)
	return binary.LittleEndian.Uint64(buf[:8]), binary.LittleEndian.Uint64(buf[8:])
}

// shortHash mixes a packed name into the high bits, which pick the slot.
func shortHash(w0, w1 uint64, n int) uint64 {
	return (w0 ^ w1*0xC2B2AE3D27D4EB4F + uint64(n)) * 0x9E3779B97F4A7C15
}

// lookupShort returns the index of the name of n <= shortName bytes packed as
// w0, w1 (see packName).
func (s *Symbols) lookupShort(w0, w1 uint64, n int) (uint32, bool) {
	mask := uint64(len(s.short) - 1)
	for j := shortHash(w0, w1, n) >> s.shortShift; ; j = (j + 1) & mask {
		e := &s.short[j]
		if e.w0 == w0 && e.w1 == w1 && e.n == uint32(n)+1 {
			return e.index, true
		}
		if e.n == 0 {
			return 0, false
		}
	}
}

func (s *Symbols) add(names []string) {
	for _, n := range names {
		if _, ok := s.index[n]; ok {
			continue
		}
		s.index[n] = uint32(len(s.names))
		s.names = append(s.names, n)
	}
}

// With returns a new table that keeps every index of s and appends the names
// not yet present. s is unchanged; indices are never reused.
func (s *Symbols) With(names ...string) *Symbols {
	n := &Symbols{index: make(map[string]uint32, len(s.names)+len(names)), names: make([]string, len(s.names), len(s.names)+len(names))}
	copy(n.names, s.names)
	for k, v := range s.index {
		n.index[k] = v
	}
	n.add(names)
	n.buildShort()
	return n
}

// Lookup returns the index of name, matched exactly (no case folding), without
// allocation.
func (s *Symbols) Lookup(name []byte) (uint32, bool) {
	if len(name) <= shortName {
		w0, w1 := packName(name)
		return s.lookupShort(w0, w1, len(name))
	}
	i, ok := s.index[string(name)]
	return i, ok
}

// Name returns the name at index i, or "" when i is out of range.
func (s *Symbols) Name(i uint32) string {
	if int(i) < len(s.names) {
		return s.names[i]
	}
	return ""
}

// Len returns the number of symbols.
func (s *Symbols) Len() int { return len(s.names) }

// Names returns a copy of the names in index order.
func (s *Symbols) Names() []string { return append([]string(nil), s.names...) }

// SymbolTable publishes the current Symbols by pointer swap: readers call
// Load from any goroutine without locking; writers (Add) are serialised by a
// mutex and copy on write. The zero value is an empty table.
type SymbolTable struct {
	mu  sync.Mutex
	cur atomic.Pointer[Symbols]
}

// NewSymbolTable returns a table holding names.
func NewSymbolTable(names ...string) *SymbolTable {
	t := &SymbolTable{}
	t.cur.Store(NewSymbols(names))
	return t
}

var emptySymbols = NewSymbols(nil)

// Load returns the current table. It never returns nil.
func (t *SymbolTable) Load() *Symbols {
	if s := t.cur.Load(); s != nil {
		return s
	}
	return emptySymbols
}

// Add publishes a new table with names appended and returns it.
func (t *SymbolTable) Add(names ...string) *Symbols {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.Load().With(names...)
	t.cur.Store(s)
	return s
}
