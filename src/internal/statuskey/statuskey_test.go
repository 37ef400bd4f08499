package statuskey

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDefault(t *testing.T) {
	t.Parallel()
	if got := Default("group/sub/project"); got != "gitlab/group/sub/project" {
		t.Errorf("Default = %q", got)
	}
	if got := Default(""); got != "bitbucket-status" {
		t.Errorf("Default(\"\") = %q", got)
	}
}

func TestFit(t *testing.T) {
	t.Parallel()
	cases := []struct{ key, want string }{
		{"gitlab/group/project", "gitlab/group/project"},
		{"gitlab/" + strings.Repeat("a", 33), "gitlab/" + strings.Repeat("a", 33)}, // exactly 40
		// Hashes checked independently: python3 -c "import hashlib; print(hashlib.sha256(KEY.encode()).hexdigest()[:8])"
		{"gitlab/acme-corporation/platform/infrastructure/terraform-modules", "gitlab/../terraform-modules-1e833b77"},
		// Hashes checked independently: python3 -c "import hashlib; print(hashlib.sha256(KEY.encode()).hexdigest()[:8])"
		{"gitlab/acme-corporation/platform/infrastructure/terraform-module", "gitlab/../terraform-module-cd62155c"},
		{"gitlab/group/" + strings.Repeat("p", 60), "gitlab/.." + strings.Repeat("p", 22) + "-0b10acd4"},
		{strings.Repeat("k", 41), "kkkkkkkk.." + strings.Repeat("k", 21) + "-6510a5e1"},
		{"gitlab/ünïcödé/ünïcödé/ünïcödé/ünïcödé/ünïcödé", "gitlab/../ünïcödé-e62ec598"},
	}
	for _, c := range cases {
		got := Fit(c.key, CloudMax)
		if got != c.want {
			t.Errorf("Fit(%q) = %q, want %q", c.key, got, c.want)
		}
		if len(got) > CloudMax {
			t.Errorf("Fit(%q) is %d bytes", c.key, len(got))
		}
	}
}

func TestFitKeepsProjectsApart(t *testing.T) {
	t.Parallel()
	// Same start, same end: only the hash tells them apart.
	a := Fit("gitlab/team-one/very-long-group-name/service/deploy", CloudMax)
	b := Fit("gitlab/team-two/very-long-group-name/service/deploy", CloudMax)
	if a == b {
		t.Fatalf("two projects got the same key %q", a)
	}
}

func TestFitDataCenterLimit(t *testing.T) {
	t.Parallel()
	key := "gitlab/acme-corporation/platform/infrastructure/terraform-modules"
	if got := Fit(key, DataCenterMax); got != key {
		t.Errorf("a key within Data Center's limit changed: %q", got)
	}
}

func FuzzFit(f *testing.F) {
	f.Add("gitlab/group/project", 40)
	f.Add("gitlab/acme-corporation/platform/infrastructure/terraform-modules", 40)
	f.Add(strings.Repeat("é", 30), 40)
	f.Add("x/y", 3)
	f.Fuzz(func(t *testing.T, key string, max int) {
		if max < 1 || max > 300 {
			return
		}
		got := Fit(key, max)
		if len(got) > max {
			t.Fatalf("Fit(%q, %d) = %q, %d bytes", key, max, got, len(got))
		}
		if len(key) <= max && got != key {
			t.Fatalf("Fit(%q, %d) changed a key that fits: %q", key, max, got)
		}
		if utf8.ValidString(key) && !utf8.ValidString(got) {
			t.Fatalf("Fit(%q, %d) = %q, not valid UTF-8", key, max, got)
		}
		if Fit(key, max) != got {
			t.Fatal("Fit is not deterministic")
		}
		if len(key) > max && max >= 20 && Fit(key+"x", max) == got {
			t.Fatalf("Fit(%q) and Fit(%q) collide: %q", key, key+"x", got)
		}
	})
}

func TestReportKeys(t *testing.T) {
	for _, c := range []struct{ path, kind, base, want string }{
		{"acme/app", "tests", "", "gitlab~acme~app~tests"},
		{"acme/app", "code-quality", "", "gitlab~acme~app~code-quality"},
		{"", "tests", "", "bitbucket-status~tests"},
		{"acme/app", "tests", "lint", "lint~tests"},
		// Two paths that differ only in where a '/' stands stay apart.
		{"a.b/c", "tests", "", "gitlab~a.b~c~tests"},
		{"a/b.c", "tests", "", "gitlab~a~b.c~tests"},
	} {
		if got := Report(c.path, c.kind, c.base); got != c.want {
			t.Errorf("Report(%q, %q, %q) = %q, want %q", c.path, c.kind, c.base, got, c.want)
		}
	}
	long := Report("platform-engineering/shared-services/terraform-modules/aws-networking", "code-quality", "")
	other := Report("platform-engineering/shared-services/terraform-modules/aws-networking2", "code-quality", "")
	if len(long) > ReportMax || long == other {
		t.Errorf("long keys %q, %q", long, other)
	}
}
