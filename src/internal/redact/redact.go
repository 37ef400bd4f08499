// Package redact keeps secrets out of everything the program prints: every
// byte bound for stdout or stderr passes through a Set, which replaces each
// secret it knows with a placeholder. Code that formats messages avoids
// secrets in the first place; this is the net under it.
package redact

import (
	"encoding/base64"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// Placeholder replaces a secret in output.
const Placeholder = "[REDACTED]"

// minLen is the shortest value treated as a secret: replacing a one- or
// two-letter value everywhere would garble the output and protect nothing
// (GitLab itself masks only values of eight characters or more).
const minLen = 4

// Set holds the secrets of one run. Its zero value is ready to use; it is
// safe for concurrent use, since secrets arrive late (an OAuth token).
type Set struct {
	mu     sync.RWMutex
	values []string
}

// Add registers a secret; values shorter than minLen are ignored.
func (s *Set) Add(secret string) {
	if len(secret) < minLen {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values = append(s.values, secret)
}

// AddBasic registers the secret and the Basic credential built from it.
func (s *Set) AddBasic(user, secret string) {
	s.Add(secret)
	if secret != "" {
		s.Add(base64.StdEncoding.EncodeToString([]byte(user + ":" + secret)))
	}
}

// Scrub returns text with every registered secret replaced, and every
// value shaped like a credential (Shapes).
func (s *Set) Scrub(text string) string {
	s.mu.RLock()
	for _, v := range s.values {
		text = strings.ReplaceAll(text, v, Placeholder)
	}
	s.mu.RUnlock()
	return Shapes(text)
}

// credentialHeader is a header or parameter that carries a credential, as
// a server that echoes a request writes it: "Authorization: Bearer x",
// "PRIVATE-TOKEN: x", "\"authorization\":\"Basic x\"", "?private_token=x".
var credentialHeader = regexp.MustCompile(`(?i)\b((?:proxy-)?authorization|private[-_]token|job[-_]token|x-gitlab-token|x-api-key|` +
	`access[-_]token|client[-_]secret)("?\s*[:=]\s*"?)((?:bearer|basic|token|digest)\s+)?([A-Za-z0-9._~+/=-]+)`)

// userinfo is a URL's user:password@.
var userinfo = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^/\s:@"'<>]*):([^/\s@"'<>]+)@`)

// credentialLike tells a credential from a word in a sentence ("the
// access_token: expired"): eight characters or more, with a digit in them
// or twenty or more.
func credentialLike(v string) bool {
	return len(v) >= 20 || (len(v) >= 8 && strings.ContainsAny(v, "0123456789"))
}

// Shapes replaces values shaped like credentials, whoever's they are: the
// value of an Authorization, PRIVATE-TOKEN or similar header or parameter
// (its scheme kept), and the password of a URL's user:password@. A server
// that echoes the request in an error body (a proxy, a debugging
// endpoint) would otherwise hand a credential the program never knew it
// held to its logs and pages.
func Shapes(text string) string {
	lower := strings.ToLower(text)
	if strings.Contains(text, "@") && strings.Contains(text, "://") {
		text = userinfo.ReplaceAllStringFunc(text, func(m string) string {
			parts := userinfo.FindStringSubmatch(m)
			if strings.Trim(parts[2], "*") == "" {
				return m // masked already, as GitLab shows a mirror's URL
			}
			return parts[1] + ":" + Placeholder + "@"
		})
	}
	for _, hint := range []string{"auth", "token", "key", "secret"} {
		if strings.Contains(lower, hint) {
			return credentialHeader.ReplaceAllStringFunc(text, func(m string) string {
				parts := credentialHeader.FindStringSubmatch(m)
				if !credentialLike(parts[4]) {
					return m
				}
				return parts[1] + parts[2] + parts[3] + Placeholder
			})
		}
	}
	return text
}

// Writer returns a writer that scrubs each write before passing it to w. A
// secret split across two writes is not caught: callers write whole messages.
func (s *Set) Writer(w io.Writer) io.Writer { return &writer{set: s, w: w} }

type writer struct {
	set *Set
	w   io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.w, w.set.Scrub(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Printable replaces the control characters of text from elsewhere (a
// server's error body) with visible escapes, keeping newlines and tabs: a
// terminal that prints it must not clear its screen, retitle its window or
// move its cursor to draw something that is not there.
func Printable(text string) string {
	clean := true
	for _, r := range text {
		if isControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return text
	}
	var b strings.Builder
	for _, r := range text {
		switch {
		case r == utf8.RuneError:
			b.WriteRune(r)
		case isControl(r) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case isControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isControl: C0 (but newline and tab), DEL, C1, and the bidirectional
// overrides that reorder what a terminal shows.
func isControl(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
