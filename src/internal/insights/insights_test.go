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

func TestFileRefs(t *testing.T) {
	text := "=== RUN TestX\n    store_test.go:42: got 2\n" +
		"    at Object.toBe (/builds/acme/shop/src/cart.test.js:18:25)\n" +
		"./spec/models/user_spec.rb:12:in `block'\n" +
		"\tat com.acme.OrderServiceTest.rejects(OrderServiceTest.java:58)\n" +
		"C:\\src\\App.Tests\\CartTests.cs:31\n" +
		"version 1.2:3 and http://host:8080/x and ...:5 and x.:7\n" +
		`  File "/builds/acme/app/tests/test_a.py", line 12, in test_a` + "\n" +
		"file /builds/acme/app/tests/test_b.py, line 20\n"
	refs, python := FileRefs(text)
	want := "[{store_test.go 42} {/builds/acme/shop/src/cart.test.js 18} {./spec/models/user_spec.rb 12} {OrderServiceTest.java 58} {\\src\\App.Tests\\CartTests.cs 31} {1.2 3}]"
	if fmt.Sprint(refs) != want {
		t.Errorf("refs\n got %v\nwant %s", refs, want)
	}
	if w := "[{/builds/acme/app/tests/test_a.py 12} {/builds/acme/app/tests/test_b.py 20}]"; fmt.Sprint(python) != w {
		t.Errorf("python %v, want %s", python, w)
	}
}
