// Command bitbucket-status posts a GitLab CI/CD result to a Bitbucket Cloud
// or Data Center commit as a build status. See --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/app"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/buildversion"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = ""

func main() {
	// GitLab Runner sends SIGTERM to a canceled job: stop retrying at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	p := &app.Program{Version: buildversion.String(version), Env: config.Environ(), Stdout: os.Stdout, Stderr: os.Stderr}
	code := p.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
