package insights

import (
	"fmt"
	"testing"
	"unicode/utf8"
)

func TestCollectorKeepsTheMostSevereInOrder(t *testing.T) {
	c := &Collector{Limit: 3}
	for i, s := range []Severity{Minor, Blocker, Info, Major, Blocker, Minor} {
		c.Add(Finding{ID: fmt.Sprint(i), Severity: s})
	}
	c.Add(Finding{ID: "1", Severity: Blocker}) // a repeated id is dropped
	kept, omitted := c.Findings()
	var got []string
	for _, f := range kept {
		got = append(got, f.ID+":"+f.Severity.String())
	}
	if fmt.Sprint(got) != "[1:blocker 4:blocker 3:major]" || omitted != 3 {
		t.Errorf("kept %v, omitted %d", got, omitted)
	}
	if !c.Remove("4") || c.Remove("4") || c.Has("4") {
		t.Error("Remove")
	}
}

func TestCut(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"ééééé", 7, "éé…"},
		{"abc\xffdef", 20, "abc\uFFFDdef"},
		{"abcdef", 2, ""},
	} {
		got := Cut(c.in, c.n)
		if got != c.want || len(got) > c.n || !utf8.ValidString(got) {
			t.Errorf("Cut(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestRelative(t *testing.T) {
	p := Paths{ProjectDir: "/builds/acme/app/"}
	for in, want := range map[string]string{
		"/builds/acme/app/src/a.go": "src/a.go", "./src/a.go": "src/a.go", "src/../src/a.go": "src/a.go", `src\win\a.cs`: "src/win/a.cs",
		"../other/a.go": "", "/etc/passwd": "", "/builds/acme/application/a.go": "", "C:/x/a.cs": "", "": "", ".": "", "src/../..": "",
	} {
		if got := p.Relative(in); got != want {
			t.Errorf("Relative(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSeverityWords(t *testing.T) {
	for _, w := range []string{"info", "MINOR", " major ", "critical", "blocker"} {
		if _, ok := ParseSeverity(w); !ok {
			t.Errorf("%q not read", w)
		}
	}
	if _, ok := ParseSeverity("high"); ok {
		t.Error("high read as a GitLab severity")
	}
}
