// Command bitbucket-status-relay turns GitLab's pipeline webhooks into
// Bitbucket build statuses. See --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/relaycmd"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	p := &relaycmd.Program{Version: versionString(), Env: env, Stdout: os.Stdout, Stderr: os.Stderr}
	code := p.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func versionString() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}
