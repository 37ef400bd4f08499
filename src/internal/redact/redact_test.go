package redact

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"testing"
)

func TestWriterScrubsSecrets(t *testing.T) {
	t.Parallel()
	var s Set
	s.AddBasic("jdoe@example.com", "tok-123456")
	s.Add("abc") // too short to be treated as a secret
	var out bytes.Buffer
	w := s.Writer(&out)
	basic := base64.StdEncoding.EncodeToString([]byte("jdoe@example.com:tok-123456"))
	n, err := fmt.Fprintf(w, "token tok-123456, header Basic %s, abc", basic)
	if err != nil || n != len("token tok-123456, header Basic "+basic+", abc") {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got, want := out.String(), "token [REDACTED], header Basic [REDACTED], abc"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestLateSecret(t *testing.T) {
	t.Parallel()
	var s Set
	var out bytes.Buffer
	w := s.Writer(&out)
	s.Add("oauth-access-token")
	fmt.Fprint(w, "Bearer oauth-access-token")
	if out.String() != "Bearer [REDACTED]" {
		t.Fatalf("got %q", out.String())
	}
}
