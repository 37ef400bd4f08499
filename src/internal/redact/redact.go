// Package redact keeps secrets out of everything the program prints: every
// byte bound for stdout or stderr passes through a Set, which replaces each
// secret it knows with a placeholder. Code that formats messages avoids
// secrets in the first place; this is the net under it.
package redact

import (
	"encoding/base64"
	"io"
	"strings"
	"sync"
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

// Scrub returns text with every registered secret replaced.
func (s *Set) Scrub(text string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, v := range s.values {
		text = strings.ReplaceAll(text, v, Placeholder)
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
