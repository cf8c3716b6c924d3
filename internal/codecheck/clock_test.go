package codecheck

import (
	"go/ast"
	"go/token"
	"strconv"
	"testing"
)

// clockExempt are the directories whose code may read the time directly:
// the clock itself, test support, and the provider emulator (a test tool
// with its own judge of time).
var clockExempt = []string{"internal/clock", "internal/testenv", "internal/judge", "internal/bench", "pushsim", "cmd/pushsim"}

// Outside tests, campaignd reads the time only through clock.Clock: no
// time.Now, time.Since or time.Until, so that a test's clock can never
// meet a second, hidden one.
func TestTimeIsReadOnlyThroughTheClock(t *testing.T) {
	t.Parallel()
	eachSourceFile(t, clockExempt, func(fset *token.FileSet, _ string, f *ast.File) {
		timePkg := ""
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "time" {
				timePkg = "time"
				if imp.Name != nil {
					timePkg = imp.Name.Name
				}
			}
		}
		if timePkg == "" {
			return
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == timePkg {
				switch sel.Sel.Name {
				case "Now", "Since", "Until":
					t.Errorf("%s: time.%s: read the time through a clock.Clock", fset.Position(sel.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
	})
}
