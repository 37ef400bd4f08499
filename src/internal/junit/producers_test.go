package junit

import (
	"fmt"
	"path"
	"strings"
	"testing"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
)

// resultJob is where the component's result job reads the files: GitLab's
// directory for the project, holding the downloaded report files and no
// sources (GIT_STRATEGY: none).
func resultJob(projectPath string) insights.Paths {
	return insights.Paths{ProjectDir: "/builds/" + projectPath, ProjectPath: projectPath, Root: "/builds/" + projectPath}
}

// checkout is where the test job itself runs report: the sources at hand,
// found by the end of their path.
func checkout(projectPath, module string, files ...string) insights.Paths {
	ps := resultJob(projectPath)
	ps.GoModule = module
	have := map[string]bool{}
	for _, f := range files {
		have[f] = true
	}
	ps.Exists = func(rel string) bool { return have[rel] }
	ps.Find = func(suffix string) string {
		var found []string
		for f := range have {
			if f == suffix || strings.HasSuffix(f, "/"+suffix) {
				found = append(found, f)
			}
		}
		if len(found) != 1 {
			return ""
		}
		return found[0]
	}
	return ps
}

// TestRealProducers: files as real test runners write them (see
// testdata/producers/SOURCES.md), read where the component reads them (no
// sources) and, where it matters, where the sources are. A failure is
// never cancelled by another suite's or file's pass; each failure lands on
// its file and line; the title says what went wrong.
func TestRealProducers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  []string
		paths  insights.Paths
		counts string // total failed errored skipped
		flaky  int
		found  []string // path:line title
	}{
		{
			// One <testsuite> per browser project, the same names; hostname
			// names the project. The chromium failure stands, named, on its
			// line (an absolute path from another runner's directory).
			name: "playwright", files: []string{"playwright-projects.xml"}, paths: resultJob("acme/shop"),
			counts: "4 1 0 0",
			found:  []string{"tests/cart.spec.js:7 cart.spec.js adds up the cart failed: Error: expect(received).toBe(expected) // Object.is equality"},
		},
		{
			// A parallel:matrix job's files differ only by Python version.
			name: "pytest matrix", files: []string{"pytest-matrix-py3.11.xml", "pytest-matrix-py3.12.xml"}, paths: resultJob("acme/shop-py"),
			counts: "2 1 0 0",
			found:  []string{"tests/test_cart.py:21 tests.test_cart test_python_version failed: AssertionError: 3.11 rounds differently"},
		},
		{
			// The same instrumentation suite on two devices.
			name: "android", files: []string{"android-Pixel_6_API_34.xml", "android-Pixel_8_API_35.xml"}, paths: resultJob("acme/shop"),
			counts: "4 1 0 0",
			found:  []string{":0 com.example.shop.CheckoutTest paysWithCard failed: java.lang.AssertionError: expected:<PAID> but was:<PENDING>"},
		},
		{
			// Two packages share describe/it: two failures, each on its
			// file, told apart; the frame inside node_modules is passed over.
			name: "jest monorepo", files: []string{"jest-monorepo.xml"}, paths: resultJob("acme/mono"),
			counts: "3 3 0 0",
			found: []string{
				"packages/api/client.test.js:5 [packages/api/client.test.js] client works failed: Error: expect(received).toBe(expected) // Object.is equality",
				"packages/api/client.test.js:9 client reads the server version failed: TypeError: Invalid Version: v2",
				"packages/web/client.test.js:3 [packages/web/client.test.js] client works failed: Error: expect(received).toBe(expected) // Object.is equality",
			},
		},
		{
			// Without the file attribute: the first frame of the project's own
			// code, past node_modules.
			name: "jest monorepo, no file attribute", files: []string{"jest-monorepo-nofile.xml"}, paths: resultJob("acme/mono"),
			counts: "3 3 0 0",
			found: []string{
				"packages/api/client.test.js:5 [packages/api/client.test.js] client works failed: Error: expect(received).toBe(expected) // Object.is equality",
				"packages/api/client.test.js:9 client reads the server version failed: TypeError: Invalid Version: v2",
				"packages/web/client.test.js:3 [packages/web/client.test.js] client works failed: Error: expect(received).toBe(expected) // Object.is equality",
			},
		},
		{
			// One file per spec, as Cypress writes with mocha: the same test
			// fails in the first, passes in the second.
			name: "mocha per spec", files: []string{"mocha-spec-a.xml", "mocha-spec-b.xml"}, paths: resultJob("acme/specs"),
			counts: "2 1 0 0",
			found:  []string{"test/login.spec.js:4 login shows the form failed: Expected values to be strictly equal:"},
		},
		{
			// xunit1: the file, the traceback's line in it (line= counts from 0).
			name: "pytest xunit1", files: []string{"pytest-xunit1.xml"}, paths: resultJob("acme/shop-py"),
			counts: "4 2 0 0",
			found: []string{
				"tests/test_cart.py:12 tests.test_cart test_total_rejects_text failed: ValueError: not a price: 'free'",
				"tests/test_cart.py:16 tests.test_cart test_discount failed: assert 80.0 == 90",
			},
		},
		{
			// xunit2: no file; the innermost frame of the project's own code,
			// past the virtual environment's site-packages: the code under
			// test that raised.
			name: "pytest xunit2", files: []string{"pytest-xunit2.xml"}, paths: resultJob("acme/shop-py"),
			counts: "4 2 0 0",
			found: []string{
				"src/shop/cart.py:5 tests.test_cart test_total_rejects_text failed: ValueError: not a price: 'free'",
				"tests/test_cart.py:16 tests.test_cart test_discount failed: assert 80.0 == 90",
			},
		},
		{
			name: "pytest-rerunfailures 10.2", files: []string{"pytest-rerunfailures-10.2.xml"}, paths: resultJob("acme/shop-py"),
			counts: "1 0 0 0",
		},
		{
			// The text starts with the test's id; the assertion's line ends it.
			name: "phpunit 9", files: []string{"phpunit9.xml"}, paths: resultJob("acme/php"),
			counts: "2 1 0 0",
			found:  []string{"tests/CartTest.php:14 Acme.Tests.CartTest testTotal failed: Failed asserting that false is true."},
		},
		{
			// ctest keeps its output, with file and line, in <system-out>.
			name: "ctest", files: []string{"ctest.xml"}, paths: resultJob("acme/native"),
			counts: "2 1 0 0",
			found:  []string{`tests/test_parse.c:8 parse_number failed: check failed: parse("42") == 42`},
		},
		{
			// Go names a file; without a checkout its package's import path
			// holds the project's path, which places it.
			name: "gotestsum, no checkout", files: []string{"gotestsum.xml"}, paths: resultJob("acme/goapp"),
			counts: "2 2 0 0",
			found: []string{
				"internal/store/store_test.go:7 bitbucket.org/acme/goapp/internal/store TestGet failed: Get(a) = 2, want 1",
				"internal/store/store_test.go:13 bitbucket.org/acme/goapp/internal/store TestEmpty failed: Get on nil = 1",
			},
		},
		{
			// With a checkout, go.mod's module places it whatever the GitLab path.
			name: "go-junit-report, checkout", files: []string{"go-junit-report.xml"},
			paths:  checkout("platform/go-app", "bitbucket.org/acme/goapp", "go.mod", "internal/store/store_test.go"),
			counts: "2 2 0 0",
			found: []string{
				"internal/store/store_test.go:7 bitbucket.org/acme/goapp/internal/store TestGet failed: Get(a) = 2, want 1",
				"internal/store/store_test.go:13 bitbucket.org/acme/goapp/internal/store TestEmpty failed: Get on nil = 1",
			},
		},
		{
			// Kotlin's frames name a file: found in the checkout by its package.
			name: "kotlin, checkout", files: []string{"kotlin-gradle.xml"},
			paths:  checkout("acme/billing", "", "src/main/kotlin/com/acme/billing/Invoice.kt", "src/test/kotlin/com/acme/billing/InvoiceTest.kt"),
			counts: "2 1 0 0",
			found:  []string{"src/main/kotlin/com/acme/billing/Invoice.kt:19 com.acme.billing.InvoiceTest sums lines() failed: org.opentest4j.AssertionFailedError: expected: <110> but was: <121>"},
		},
		{
			name: "kotlin, no checkout", files: []string{"kotlin-gradle.xml"}, paths: resultJob("acme/billing"),
			counts: "2 1 0 0",
			found:  []string{":0 com.acme.billing.InvoiceTest sums lines() failed: org.opentest4j.AssertionFailedError: expected: <110> but was: <121>"},
		},
		{
			// .NET: the file attribute is the test DLL; the frame's path is
			// the source.
			name: "dotnet", files: []string{"dotnet-junit-logger.xml"}, paths: resultJob("acme/shop"),
			counts: "2 1 0 0",
			found:  []string{"tests/Acme.Shop.Tests/CartTests.cs:27 Acme.Shop.Tests.CartTests Total_AddsTaxOnce failed: Assert.Equal() Failure: Values differ"},
		},
		{
			// Cypress: the spec on the file's first suite, webpack:// frames.
			name: "cypress", files: []string{"cypress-login.xml"}, paths: resultJob("acme/shop"),
			counts: "2 1 0 0",
			found:  []string{"cypress/e2e/login.cy.js:12 login shows an error for a wrong password failed: Timed out retrying after 4000ms: expected '<div.error>' to contain 'Wrong password'"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Reader{Paths: tc.paths}
			for _, f := range tc.files {
				if err := r.ReadFile(path.Join("testdata/producers", f)); err != nil {
					t.Fatal(err)
				}
			}
			c := r.Counts()
			if got := fmt.Sprintf("%d %d %d %d", c.Total, c.Failed, c.Errored, c.Skipped); got != tc.counts || r.Flaky() != tc.flaky {
				t.Errorf("counts %s, flaky %d; want %s, %d", got, r.Flaky(), tc.counts, tc.flaky)
			}
			found, omitted := r.Failures()
			var got []string
			ids := map[string]bool{}
			for _, f := range found {
				got = append(got, fmt.Sprintf("%s:%d %s", f.Path, f.Line, f.Title))
				ids[f.ID] = true
			}
			if strings.Join(got, "\n") != strings.Join(tc.found, "\n") || omitted != 0 {
				t.Errorf("findings (%d omitted):\n got %s\nwant %s", omitted, strings.Join(got, "\n     "), strings.Join(tc.found, "\n     "))
			}
			if len(ids) != len(found) || c.Failed+c.Errored != len(found) {
				t.Errorf("%d failures counted, %d annotations, %d distinct IDs: they must agree", c.Failed+c.Errored, len(found), len(ids))
			}
			if rep := r.Report(""); rep.Passed != (c.Failed+c.Errored == 0 && c.Total > 0) {
				t.Errorf("the report passed = %v with %+v", rep.Passed, c)
			}
		})
	}
}
