package junit

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func filtered(t *testing.T, r io.Reader) string {
	t.Helper()
	out, err := io.ReadAll(newOutputFilter(r))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// The filter drops output elements whole, keeps their newlines, and leaves
// everything else byte for byte, however the input is cut into reads.
func TestOutputFilter(t *testing.T) {
	in := "<testsuite>\n<testcase name=\"a\"><system-out>line 1\nline 2 </system-err> <x>\n" +
		"<![CDATA[ </system-out> \n]]><!-- </system-out> -->\n</system-out></testcase>\n" +
		"<testcase name=\"b\"><system-err attr=\"v\">e</system-err><system-out/><system-outage>kept</system-outage>" +
		"<failure message=\"m\"><![CDATA[</system-out>]]></failure></testcase>\n</testsuite>\n"
	want := "<testsuite>\n<testcase name=\"a\">\n\n\n\n</testcase>\n" +
		"<testcase name=\"b\"><system-outage>kept</system-outage>" +
		"<failure message=\"m\"><![CDATA[</system-out>]]></failure></testcase>\n</testsuite>\n"
	for name, r := range map[string]func() io.Reader{
		"whole":       func() io.Reader { return strings.NewReader(in) },
		"byte a read": func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
		"half reads":  func() io.Reader { return iotest.HalfReader(strings.NewReader(in)) },
	} {
		if got := filtered(t, r()); got != want {
			t.Errorf("%s:\n got %q\nwant %q", name, got, want)
		}
	}
}

// A failed test's output is kept (ctest keeps its whole failure there);
// a passing test's, and the next test's after a failure, are dropped.
func TestOutputFilterKeepsAFailuresOutput(t *testing.T) {
	in := "<testsuite><testcase name=\"a\"><failure message=\"\"/><system-out>a.c:8: check failed</system-out><system-err>e</system-err></testcase>" +
		"<testcase name=\"b\"><system-out>passing\n</system-out></testcase>" +
		"<testcase name=\"c\"><error type=\"x\">boom</error>\n<system-out>c's output</system-out></testcase></testsuite>"
	want := "<testsuite><testcase name=\"a\"><failure message=\"\"/><system-out>a.c:8: check failed</system-out><system-err>e</system-err></testcase>" +
		"<testcase name=\"b\">\n</testcase>" +
		"<testcase name=\"c\"><error type=\"x\">boom</error>\n<system-out>c's output</system-out></testcase></testsuite>"
	for name, r := range map[string]func() io.Reader{
		"whole":       func() io.Reader { return strings.NewReader(in) },
		"byte a read": func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
	} {
		if got := filtered(t, r()); got != want {
			t.Errorf("%s:\n got %q\nwant %q", name, got, want)
		}
	}
}

// A JUnit file's lines stay its own: an error after dropped output names
// the line it is on.
func TestOutputFilterKeepsLineNumbers(t *testing.T) {
	doc := "<testsuites>\n<testsuite name=\"s\">\n<testcase name=\"a\" classname=\"c\">\n<system-out>\n1\n2\n3\n</system-out>\n</testcase>\n<testcase name=\"b\">\n</testsuite>\n"
	err := (&Reader{}).Read(strings.NewReader(doc), "x.xml")
	if err == nil || err.Error() != "x.xml: line 11: element <testcase> closed by </testsuite>" {
		t.Fatalf("error %v", err)
	}
}

// FuzzOutputFilter: the filter ends, never adds, and gives the same bytes
// however the input is cut into reads.
func FuzzOutputFilter(f *testing.F) {
	f.Add("<a><system-out>x\n<![CDATA[</system-out>]]></system-out></a>")
	f.Add("<system-err/><system-out a='1'>\n<!-- -- -->")
	f.Add("<system-out")
	f.Add("<![CDATA[ <system-out> ]]>")
	f.Add("<testcase><failure/><system-out>kept</system-out></testcase><testcase><system-out>dropped</system-out>")
	f.Fuzz(func(t *testing.T, in string) {
		whole := filtered(t, strings.NewReader(in))
		if len(whole) > len(in) {
			t.Fatalf("%q became longer: %q", in, whole)
		}
		if bytewise := filtered(t, iotest.OneByteReader(strings.NewReader(in))); bytewise != whole {
			t.Fatalf("%q: whole %q, a byte a read %q", in, whole, bytewise)
		}
	})
}
