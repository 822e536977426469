package api

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// api serves what the pipeline computes but depends on none of its stages:
// among the project's packages it imports only parse, shard and ring (the
// daemon wires it to the pipeline, the feed and the store).
func TestImports(t *testing.T) {
	allowed := map[string]bool{
		"github.com/klagg/klagg/parse": true, "github.com/klagg/klagg/shard": true, "github.com/klagg/klagg/ring": true,
	}
	files, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".go") || strings.HasSuffix(f.Name(), "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f.Name(), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/klagg/klagg/") && !allowed[p] {
				t.Errorf("%s imports %s", f.Name(), p)
			}
		}
	}
}
