// Command bitbucket-status-relay turns GitLab's pipeline webhooks into
// Bitbucket build statuses. See --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/buildversion"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/relaycmd"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	p := &relaycmd.Program{Version: buildversion.String(version), Env: config.Environ(), Stdout: os.Stdout, Stderr: os.Stderr,
		Stdin: os.Stdin, Terminal: isTerminal(os.Stderr)}
	code := p.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device (a terminal), which
// hears progress during long waits.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
