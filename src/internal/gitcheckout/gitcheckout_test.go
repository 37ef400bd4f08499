package gitcheckout

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	git(t, dir, "init", "-q", "-b", "feature/x")
	git(t, dir, "commit", "-q", "--allow-empty", "-m", "first")
	git(t, dir, "remote", "add", "origin", "git@bitbucket.org:acme/widgets.git")
	head := git(t, dir, "rev-parse", "HEAD")
	got, err := Read(context.Background(), dir)
	if err != nil || got != (Checkout{Commit: head, Branch: "feature/x", Origin: "git@bitbucket.org:acme/widgets.git"}) {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	git(t, dir, "checkout", "-q", "--detach")
	git(t, dir, "remote", "remove", "origin")
	got, err = Read(context.Background(), dir)
	if err != nil || got != (Checkout{Commit: head}) {
		t.Fatalf("detached, no origin: Read = %+v, %v", got, err)
	}
}

func TestReadOutsideRepository(t *testing.T) {
	t.Parallel()
	_, err := Read(context.Background(), t.TempDir())
	if err == nil || !strings.HasPrefix(err.Error(), "git rev-parse: fatal: not a git repository") {
		t.Fatalf("err = %v", err)
	}
}
