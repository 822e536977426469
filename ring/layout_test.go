package ring

import (
	"go/build"
	"strings"
	"testing"
	"unsafe" // test only: measures the padding the package builds without unsafe
)

// TestLayout checks that data written by different goroutines sits at least
// one cacheLine apart, so the two sides never share a line or a prefetch pair.
func TestLayout(t *testing.T) {
	var r Ring[item64]
	groups := []struct {
		name       string
		start, end uintptr // [start, end)
	}{
		{"read-only header", unsafe.Offsetof(r.buf), unsafe.Offsetof(r.closed) + unsafe.Sizeof(r.closed)},
		{"tail", unsafe.Offsetof(r.tail), unsafe.Offsetof(r.tail) + unsafe.Sizeof(r.tail)},
		{"producer", unsafe.Offsetof(r.p), unsafe.Offsetof(r.p) + unsafe.Sizeof(r.p)},
		{"head", unsafe.Offsetof(r.head), unsafe.Offsetof(r.head) + unsafe.Sizeof(r.head)},
		{"consumer", unsafe.Offsetof(r.c), unsafe.Offsetof(r.c) + unsafe.Sizeof(r.c)},
		{"producer waiter, wakers' part", unsafe.Offsetof(r.prodWait) + unsafe.Offsetof(r.prodWait.parked),
			unsafe.Offsetof(r.prodWait) + unsafe.Offsetof(r.prodWait.wakes) + unsafe.Sizeof(r.prodWait.wakes)},
		{"producer waiter, owner's part", unsafe.Offsetof(r.prodWait) + unsafe.Offsetof(r.prodWait.spin),
			unsafe.Offsetof(r.prodWait) + unsafe.Offsetof(r.prodWait.skips) + unsafe.Sizeof(r.prodWait.skips)},
	}
	if groups[0].start < cacheLine {
		t.Errorf("header starts at %d, want >= %d (leading pad)", groups[0].start, cacheLine)
	}
	for i := 1; i < len(groups); i++ {
		a, b := groups[i-1], groups[i]
		if gap := b.start - a.end; gap < cacheLine {
			t.Errorf("%s ends %d bytes before %s starts, want >= %d", a.name, gap, b.name, cacheLine)
		}
	}
	if tail := unsafe.Sizeof(r) - groups[len(groups)-1].end; tail < cacheLine {
		t.Errorf("only %d bytes after the last group, want >= %d", tail, cacheLine)
	}
	// A Waiter's owner writes its counters and state on every wait; the line
	// every Publish loads (parked) must not be among them.
	var w Waiter
	wakersEnd := unsafe.Offsetof(w.wakes) + unsafe.Sizeof(w.wakes)
	ownerStart, ownerEnd := unsafe.Offsetof(w.spin), unsafe.Offsetof(w.skips)+unsafe.Sizeof(w.skips)
	if unsafe.Offsetof(w.parked) < cacheLine || ownerStart-wakersEnd < cacheLine || unsafe.Sizeof(w)-ownerEnd < cacheLine {
		t.Errorf("Waiter not padded: parked at %d, wakers' part ends at %d, owner's part at %d..%d, size %d",
			unsafe.Offsetof(w.parked), wakersEnd, ownerStart, ownerEnd, unsafe.Sizeof(w))
	}
	t.Logf("sizeof Ring = %d, Waiter = %d", unsafe.Sizeof(r), unsafe.Sizeof(w))
}

// TestImports keeps ring at the bottom of the import graph (STYLE rule 2).
func TestImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "github.com/klagg/") {
			t.Errorf("ring imports project package %s", imp)
		}
		if imp == "unsafe" {
			t.Error("ring imports unsafe outside tests")
		}
	}
}
