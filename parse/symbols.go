package parse

import (
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
}

// NewSymbols returns a table holding names, as given, in order; a repeated
// name keeps its first index.
func NewSymbols(names []string) *Symbols {
	s := &Symbols{index: make(map[string]uint32, len(names)), names: make([]string, 0, len(names))}
	s.add(names)
	return s
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
	return n
}

// Lookup returns the index of name, matched exactly (no case folding): one
// map lookup, without allocation.
func (s *Symbols) Lookup(name []byte) (uint32, bool) {
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
