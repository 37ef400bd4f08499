// Package sourcetree finds a repository's files by the end of their path in
// the checkout a report is read in (the job that ran the tests): what turns
// a stack trace's file name ("Invoice.kt", "CartTests.cs" of another
// machine's path) into the repository's path. Where there is no checkout
// (the component's result jobs hold only the report files) it finds
// nothing, and the failure goes to the report's overview.
package sourcetree

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// MaxFiles bounds the files indexed: a checkout larger than that is
// searched in its first MaxFiles files.
const MaxFiles = 200_000

// skipped are directories that hold no source of the project's own: a
// stack trace's frame there is a dependency's or a build's.
var skipped = map[string]bool{".git": true, "node_modules": true, "vendor": true, ".venv": true, "venv": true, "site-packages": true,
	".tox": true, "target": true, "build": true, "bin": true, "obj": true, "dist": true, ".gradle": true, ".idea": true, ".m2": true,
	"__pycache__": true, ".gitlab-ci-local": true}

// Tree is a checkout's files, indexed by name on first use.
type Tree struct {
	root   string
	once   sync.Once
	byName map[string][]string
}

// New is the tree under root; nothing is read until a lookup.
func New(root string) *Tree { return &Tree{root: root} }

// Find returns the one file whose path ends with suffix ("com/acme/Cart.kt"
// or "Cart.kt"), relative to the root; "" when none or several do.
func (t *Tree) Find(suffix string) string {
	t.once.Do(t.index)
	suffix = strings.Trim(strings.ReplaceAll(suffix, "\\", "/"), "/")
	if suffix == "" {
		return ""
	}
	found := ""
	for _, p := range t.byName[path.Base(suffix)] {
		if p == suffix || strings.HasSuffix(p, "/"+suffix) {
			if found != "" {
				return ""
			}
			found = p
		}
	}
	return found
}

func (t *Tree) index() {
	t.byName = map[string][]string{}
	n := 0
	_ = filepath.WalkDir(t.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if p != t.root && (skipped[d.Name()] || isVenv(p)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if n++; n > MaxFiles {
			return filepath.SkipAll
		}
		rel, err := filepath.Rel(t.root, p)
		if err != nil {
			return nil
		}
		rel = filepath.ToSlash(rel)
		t.byName[path.Base(rel)] = append(t.byName[path.Base(rel)], rel)
		return nil
	})
}

// isVenv: a Python virtual environment, whatever its name.
func isVenv(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "pyvenv.cfg"))
	return err == nil
}

// GoModule is the module path the go.mod at root declares, "" without one.
func GoModule(root string) string {
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(strings.SplitN(rest, "//", 2)[0]), `"`)
		}
	}
	return ""
}
