// Command bitbucket-status posts a GitLab CI/CD result to a Bitbucket Cloud
// or Data Center commit as a build status. See --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/app"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = ""

func main() {
	// GitLab Runner sends SIGTERM to a canceled job: stop retrying at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	p := &app.Program{Version: versionString(), Env: app.Environ(), Stdout: os.Stdout, Stderr: os.Stderr}
	code := p.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// versionString falls back to what the go command recorded, for a binary
// built without the ldflags (go install, go run).
func versionString() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if v := info.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
