// Package globfiles finds the files a glob names as GitLab's artifacts:paths
// do: '*', '?' and '[...]' within a path segment, and '**' for any number of
// folders.
package globfiles

import (
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Match returns the regular files under dir that pattern (relative to dir,
// or absolute) names, sorted. A malformed pattern is an error.
func Match(dir, pattern string) ([]string, error) {
	pattern = filepath.ToSlash(pattern)
	if _, err := path.Match(strings.ReplaceAll(pattern, "**", "*"), ""); err != nil {
		return nil, err
	}
	root := dir
	if path.IsAbs(pattern) {
		root = "/"
		pattern = strings.TrimPrefix(pattern, "/")
	}
	pattern = strings.TrimPrefix(path.Clean(pattern), "./")
	segments := strings.Split(pattern, "/")
	// Walk only below the part of the pattern that has no wildcard.
	fixed := 0
	for fixed < len(segments)-1 && !strings.ContainsAny(segments[fixed], "*?[") {
		fixed++
	}
	base := filepath.Join(root, filepath.FromSlash(path.Join(segments[:fixed]...)))
	rest := segments[fixed:]
	var out []string
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == base {
				return fs.SkipAll
			}
			return nil
		}
		rel, _ := filepath.Rel(base, p)
		if rel == "." {
			return nil
		}
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if d.IsDir() {
			if d.Name() == ".git" || !prefixMayMatch(rest, parts) {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && match(rest, parts) {
			out = append(out, p)
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// match reports whether the path segments match the pattern's.
func match(pattern, parts []string) bool {
	if len(pattern) == 0 {
		return len(parts) == 0
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(parts); i++ {
			if match(pattern[1:], parts[i:]) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 {
		return false
	}
	ok, _ := path.Match(pattern[0], parts[0])
	return ok && match(pattern[1:], parts[1:])
}

// prefixMayMatch: could a file below the folder parts match the pattern?
func prefixMayMatch(pattern, parts []string) bool {
	for i, p := range parts {
		if i >= len(pattern) {
			return false
		}
		if pattern[i] == "**" {
			return true
		}
		if ok, _ := path.Match(pattern[i], p); !ok {
			return false
		}
	}
	return true
}
