// Package gitcheckout reads the commit, branch and origin remote of the git
// checkout the program runs in, so a person at a terminal need not set what
// GitLab CI would.
package gitcheckout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Checkout is what the program needs to know of a git working tree.
type Checkout struct {
	Commit string
	// Branch is empty on a detached HEAD.
	Branch string
	// Origin is the URL of the remote "origin", empty if there is none.
	Origin string
}

// Read asks git about the working tree in dir ("" for the current directory).
func Read(ctx context.Context, dir string) (Checkout, error) {
	commit, err := run(ctx, dir, "rev-parse", "--verify", "HEAD")
	if err != nil {
		return Checkout{}, err
	}
	// Neither may fail the run: a detached HEAD has no branch, and a clone
	// need not have an origin.
	branch, _ := run(ctx, dir, "symbolic-ref", "--short", "-q", "HEAD")
	origin, _ := run(ctx, dir, "remote", "get-url", "origin")
	return Checkout{Commit: commit, Branch: branch, Origin: origin}, nil
}

func run(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", errors.New("git is not installed")
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("git %s: %s", args[0], msg)
	}
	return strings.TrimSpace(stdout.String()), nil
}
