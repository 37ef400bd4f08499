// Package statuskey builds the key that identifies one GitLab project's build
// status on a Bitbucket commit, and fits any key into Bitbucket's length limit
// without making two keys collide or the result unreadable.
package statuskey

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// Limits of the key's length in bytes: Bitbucket Cloud rejects more than 40
// characters (a limit its OpenAPI does not show), Data Center more than 255.
const (
	CloudMax      = 40
	DataCenterMax = 255
)

// Prefix starts every default key, so a status from GitLab is recognisable.
const Prefix = "gitlab/"

// hashLen hex digits of SHA-256 tell shortened keys apart: 32 bits leave a
// one-in-a-million chance of a clash among ninety projects on one repository.
const hashLen = 8

// ellipsis marks where a shortened key lost its middle.
const ellipsis = ".."

// Default returns the key for a GitLab project: the same for every job and
// pipeline of the project, and different for two projects.
func Default(projectPath string) string {
	if projectPath == "" {
		return "bitbucket-status"
	}
	return Prefix + projectPath
}

// Fit returns key unchanged when it is at most max bytes long. A longer key
// keeps its vendor prefix (up to its first '/') and its end, which names the
// project, and ends with a hash of the whole key, so two long keys that share
// their start and end still differ: "gitlab/../terraform-modules-1a2b3c4d".
// The result is at most max bytes and valid UTF-8 when key is.
func Fit(key string, max int) string {
	if len(key) <= max {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	suffix := "-" + hex.EncodeToString(sum[:])[:hashLen]
	if max < len(suffix) {
		return suffix[1 : 1+min(max, hashLen)]
	}
	room := max - len(suffix)
	head := ""
	if i := strings.IndexByte(key, '/'); i >= 0 && i+1 <= 12 && i+1+len(ellipsis) < room {
		head = key[:i+1]
	} else {
		head = cutRunes(key, min(8, room/3))
	}
	tailRoom := room - len(head) - len(ellipsis)
	if tailRoom <= 0 {
		return cutRunes(key, room) + suffix
	}
	tail := key[len(key)-tailRoom:]
	for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
		tail = tail[1:]
	}
	// Start the tail at a path segment where one fits: "/terraform-modules"
	// reads better than "ture/terraform-modules".
	if i := strings.IndexByte(tail, '/'); i >= 0 && i < len(tail)-1 {
		tail = tail[i:]
	}
	return head + ellipsis + tail + suffix
}

// cutRunes returns the longest prefix of s of at most n bytes that does not
// split a UTF-8 sequence.
func cutRunes(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ReportMax is the longest Code Insights report key: Data Center refuses
// more than 50 characters, Cloud documents no limit; one key serves both.
const ReportMax = 50

// Report returns the key of a GitLab project's Code Insights report of one
// kind ("tests", "code-quality"): distinct per project and kind, the same
// from the job and from the relay. '/' becomes '~', which a GitLab path
// never holds and a URL carries as it is (an escaped '/' in a path is
// refused by many proxies). base, when set, replaces "gitlab~<path>".
func Report(projectPath, kind, base string) string {
	if base == "" {
		base = "bitbucket-status"
		if projectPath != "" {
			base = "gitlab~" + strings.ReplaceAll(projectPath, "/", "~")
		}
	}
	return Fit(base+"~"+kind, ReportMax)
}
