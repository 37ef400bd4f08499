package globfiles

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"junit.xml", "reports/a.xml", "reports/b.json", "pkg/x/reports/c.xml", "pkg/y/z/report.xml", ".git/x.xml"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for pattern, want := range map[string]string{
		"junit.xml":        "[junit.xml]",
		"./reports/*.xml":  "[reports/a.xml]",
		"**/*.xml":         "[junit.xml pkg/x/reports/c.xml pkg/y/z/report.xml reports/a.xml]",
		"pkg/**/reports/*": "[pkg/x/reports/c.xml]",
		"reports/?.json":   "[reports/b.json]",
		"missing/*.xml":    "[]",
		dir + "/reports/*": "[reports/a.xml reports/b.json]",
	} {
		got, err := Match(dir, pattern)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			got[i] = strings.TrimPrefix(filepath.ToSlash(got[i]), filepath.ToSlash(dir)+"/")
		}
		if fmt.Sprint(got) != want {
			t.Errorf("Match(%q) = %v, want %s", pattern, got, want)
		}
	}
	if _, err := Match(dir, "reports/[.xml"); err == nil {
		t.Error("a malformed pattern was accepted")
	}
}
