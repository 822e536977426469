package pipeline

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsPointOneWay keeps the layering of STYLE.md: ring and parse import no
// project package, shard imports at most parse, pipeline wires the stages and knows
// nothing of Binance's session (feed) or of cmd and bench.
func TestImportsPointOneWay(t *testing.T) {
	const mod = "github.com/klagg/klagg/"
	allowed := map[string][]string{
		"ring":     {"ring"},
		"parse":    {"parse"},
		"shard":    {"shard", "parse"},
		"pipeline": {"pipeline", "parse", "ring", "shard", "record"},
		"feed":     {"feed", "pipeline", "parse", "ring", "shard", "record", "exchange"},
		"exchange": {"exchange", "parse"},
		"store":    {"store", "parse", "shard"},
		"api":      {"api", "parse", "ring", "shard"},
		"record":   {"record"},
	}
	for pkg, ok := range allowed {
		out, err := exec.Command("go", "list", "-deps", mod+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if !strings.HasPrefix(dep, mod) {
				continue
			}
			name := strings.TrimPrefix(dep, mod)
			found := false
			for _, a := range ok {
				found = found || name == a
			}
			if !found {
				t.Errorf("%s imports %s", pkg, name)
			}
		}
	}
}
