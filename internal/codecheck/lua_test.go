// Package codecheck holds tests that read the repository's own source to
// hold it to the house rules (issue 24).
package codecheck

import (
	"go/ast"
	"go/token"
	"strings"
	"testing"
)

// Every Lua script (a package-level redis.NewScript) says in its doc
// comment what its KEYS and ARGV are and what it returns.
func TestEveryLuaScriptDocumentsKeysArgvAndReturn(t *testing.T) {
	t.Parallel()
	scripts := 0
	eachSourceFile(t, nil, func(fset *token.FileSet, rel string, f *ast.File) {
		for _, decl := range f.Decls {
			g, ok := decl.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				if len(vs.Values) != 1 || !isNewScript(vs.Values[0]) {
					continue
				}
				scripts++
				doc := vs.Doc
				if doc == nil {
					doc = g.Doc
				}
				text := ""
				if doc != nil {
					text = doc.Text()
				}
				for _, want := range []string{"KEYS", "ARGV", "return"} {
					if !strings.Contains(strings.ToLower(text), strings.ToLower(want)) {
						t.Errorf("%s: script %s does not say what its %s is", rel, vs.Names[0].Name, want)
					}
				}
			}
		}
	})
	if scripts < 20 {
		t.Fatalf("found %d scripts; the walk missed some", scripts)
	}
}

// isNewScript reports whether e is a call of redis.NewScript.
func isNewScript(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "NewScript" {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == "redis"
}
