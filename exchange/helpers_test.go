package exchange

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// sharedData returns the path of a file of the shared Binance data, skipping
// the test when the folder is absent (a fresh clone elsewhere).
func sharedData(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "shared", "data", "binance", name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared Binance data not available (%v): skipping", err)
	}
	return p
}

func readShared(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(sharedData(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeClock is an injectable clock whose sleeps advance time instantly and are
// recorded, so rate-limit tests count waits instead of timing them.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
	f.sleeps = append(f.sleeps, d)
}

func (f *fakeClock) sleep(d time.Duration) { f.advance(d) }

func (f *fakeClock) sleepCtx(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.advance(d)
	return nil
}

func (f *fakeClock) recorded() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}
