package state

import (
	"strings"
	"testing"
)

func TestParseEveryWord(t *testing.T) {
	t.Parallel()
	cases := map[string]State{
		"running": InProgress, "pending": InProgress, "created": InProgress, "manual": InProgress,
		"scheduled": InProgress, "waiting_for_resource": InProgress, "preparing": InProgress, "inprogress": InProgress,
		"INPROGRESS": InProgress, " Running\n": InProgress,
		"passed": Successful, "success": Successful, "successful": Successful, "SUCCESSFUL": Successful,
		"failed": Failed, "failure": Failed, "FAILED": Failed,
		"canceled": Stopped, "canceling": Stopped, "waiting_for_callback": InProgress, "cancelled": Stopped, "stopped": Stopped, "skipped": Stopped, "STOPPED": Stopped,
	}
	for word, want := range cases {
		got, err := Parse(word)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", word, got, err, want)
		}
	}
}

func TestParseUnknownListsAcceptedWords(t *testing.T) {
	t.Parallel()
	_, err := Parse("pased")
	want := `unknown state "pased": use one of running, pending, created, manual, scheduled, waiting_for_resource, ` +
		`preparing, waiting_for_callback, inprogress (INPROGRESS); passed, success, successful (SUCCESSFUL); failed, failure (FAILED); ` +
		`canceled, canceling, cancelled, stopped, skipped (STOPPED)`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse(pased) error = %v\nwant %s", err, want)
	}
}

func TestParseLongWordIsShortenedInError(t *testing.T) {
	t.Parallel()
	_, err := Parse(strings.Repeat("x", 500))
	if err == nil || !strings.HasPrefix(err.Error(), `unknown state "`+strings.Repeat("x", 40)+`..."`) {
		t.Fatalf("error = %v", err)
	}
}

func TestFinal(t *testing.T) {
	t.Parallel()
	if InProgress.Final() || !Successful.Final() || !Failed.Final() || !Stopped.Final() {
		t.Fatal("only INPROGRESS is not final")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"running", "PASSED", "x", "", "\xff", "canceled "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, word string) {
		s, err := Parse(word)
		if err != nil {
			if s != "" || len(err.Error()) > len(Accepted)+200 {
				t.Fatalf("Parse(%q) = %q, %v", word, s, err)
			}
			return
		}
		switch s {
		case InProgress, Successful, Failed, Stopped:
		default:
			t.Fatalf("Parse(%q) = %q, not a Bitbucket state", word, s)
		}
	})
}
