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

// TestShapes: a credential echoed by a server is removed whoever's it is,
// its header and scheme kept; words that merely follow such a name stay.
func TestShapes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"upstream said: Authorization: Bearer ATCTT3xFfGN0abc123 was refused":   "upstream said: Authorization: Bearer [REDACTED] was refused",
		`{"headers":{"authorization":"Basic dXNlcjpwYXNzd29yZDEyMw=="}}`:        `{"headers":{"authorization":"Basic [REDACTED]"}}`,
		"PRIVATE-TOKEN: glpat-AbCdEf1234567890xyz":                              "PRIVATE-TOKEN: [REDACTED]",
		"GET /api/v4/projects/1/mirror/pull?private_token=glpat-secret999 HTTP": "GET /api/v4/projects/1/mirror/pull?private_token=[REDACTED] HTTP",
		"cloning https://x-token-auth:ATCTT3xFfGN0abc123@bitbucket.org/a/b.git": "cloning https://x-token-auth:[REDACTED]@bitbucket.org/a/b.git",
		"postgres://relay:s3cret-pw@db:5432/relay":                              "postgres://relay:[REDACTED]@db:5432/relay",
		"https://*****:*****@bitbucket.org/acme/x.git":                          "https://*****:*****@bitbucket.org/acme/x.git",
		"client_secret=abcd1234efgh&grant_type=client_credentials":              "client_secret=[REDACTED]&grant_type=client_credentials",
		// Sentences that name a credential keep their words.
		"Authorization: (none: no credential is set)":                  "Authorization: (none: no credential is set)",
		"check BITBUCKET_OAUTH_CLIENT_SECRET: they are the key":        "check BITBUCKET_OAUTH_CLIENT_SECRET: they are the key",
		"the access_token: expired":                                    "the access_token: expired",
		"mail jdoe@example.com about https://bitbucket.org/acme/x.git": "mail jdoe@example.com about https://bitbucket.org/acme/x.git",
		"Authorization: Bearer [REDACTED]":                             "Authorization: Bearer [REDACTED]",
	} {
		if got := Shapes(in); got != want {
			t.Errorf("Shapes(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}

// TestPrintable: a server's bytes cannot clear a terminal, retitle it,
// move its cursor or reorder its text.
func TestPrintable(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"\x1b[2J\x1b[HALL GREEN":            `\x1b[2J\x1b[HALL GREEN`,
		"\x1b]0;pwned\x07title":             `\x1b]0;pwned\x07title`,
		"line one\nline\ttwo\r overwritten": "line one\nline\ttwo\\x0d overwritten",
		"csi \u009b31m red":                 `csi \x9b31m red`,
		"evil \u202egnp.exe":                `evil \u202egnp.exe`,
		"plain café, 日本":                    "plain café, 日本",
		"del \x7f":                          `del \x7f`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
