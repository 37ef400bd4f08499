package sourcetree

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindAndGoModule(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, f := range []string{"go.mod", "src/main/kotlin/com/acme/billing/Invoice.kt", "src/test/kotlin/com/acme/billing/InvoiceTest.kt",
		"app/Cart.java", "lib/Cart.java", "node_modules/x/Invoice.kt", ".venv2/pyvenv.cfg", ".venv2/lib/site.py", "build/gen/Invoice.kt"} {
		p := filepath.Join(root, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		body := ""
		if f == "go.mod" {
			body = "// a comment\nmodule bitbucket.org/acme/goapp // the module\n\ngo 1.22\n"
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tree := New(root)
	for suffix, want := range map[string]string{
		"com/acme/billing/Invoice.kt": "src/main/kotlin/com/acme/billing/Invoice.kt", // not node_modules', not build's
		"Invoice.kt":                  "src/main/kotlin/com/acme/billing/Invoice.kt",
		"InvoiceTest.kt":              "src/test/kotlin/com/acme/billing/InvoiceTest.kt",
		"Cart.java":                   "", // two: not one to trust
		"app/Cart.java":               "app/Cart.java",
		"site.py":                     "", // in a virtual environment
		"ng/Invoice.kt":               "",
		"":                            "",
	} {
		if got := tree.Find(suffix); got != want {
			t.Errorf("Find(%q) = %q, want %q", suffix, got, want)
		}
	}
	if got := GoModule(root); got != "bitbucket.org/acme/goapp" {
		t.Errorf("GoModule = %q", got)
	}
	if got := GoModule(t.TempDir()); got != "" {
		t.Errorf("GoModule without go.mod = %q", got)
	}
}
