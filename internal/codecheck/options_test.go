package codecheck

import (
	"go/ast"
	"go/token"
	"strings"
	"testing"
)

// maxOptionFields is the most fields an exported options struct may have:
// beyond it, a part does too much, and its options are split by concern
// (worker.Options.Queue, .Plan, .Send …).
const maxOptionFields = 15

// optionSuffixes name the structs that configure something.
var optionSuffixes = []string{"Options", "Config", "Params"}

// Every exported options struct (a type named …Options, …Config or
// …Params) has at most maxOptionFields fields.
func TestOptionsStructsAreSmall(t *testing.T) {
	t.Parallel()
	seen := 0
	eachSourceFile(t, nil, func(fset *token.FileSet, _ string, f *ast.File) {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, spec := range g.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok || !ts.Name.IsExported() || !isOptions(ts.Name.Name) {
					continue
				}
				seen++
				n := 0
				for _, field := range st.Fields.List {
					n += max(len(field.Names), 1) // an embedded field counts once
				}
				if n > maxOptionFields {
					t.Errorf("%s: %s has %d fields, at most %d: split it by concern", fset.Position(ts.Pos()), ts.Name.Name, n, maxOptionFields)
				}
			}
		}
	})
	if seen < 10 {
		t.Fatalf("only %d options structs found: the walk is broken", seen)
	}
}

func isOptions(name string) bool {
	for _, s := range optionSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}
