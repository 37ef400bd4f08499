// Package relaycmd is bitbucket-status-relay's command line: serve, check
// and version, configuration from the environment, exit codes.
package relaycmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/redact"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/relay"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/relaystatus"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

// Exit codes.
const (
	ExitOK = 0
	// ExitFailed: a check failed, or the server stopped on an error.
	ExitFailed = 1
	// ExitUsage: a configuration or usage error, found before serving.
	ExitUsage = 2
)

// Program is one run's outside world.
type Program struct {
	Version string
	Env     map[string]string
	Stdout  io.Writer
	Stderr  io.Writer
	// Transport, when set, sends every outgoing request (tests).
	Transport http.RoundTripper
	// Stdin is connect --file -'s input; Terminal: stderr is a terminal,
	// which hears connect's progress.
	Stdin    io.Reader
	Terminal bool
	// connectPoll is how often connect looks at a mirror update (tests).
	connectPoll time.Duration
}

type usageError struct{ error }

// Run runs args (without the program name) and returns the exit code.
func (p *Program) Run(ctx context.Context, args []string) int {
	secrets := &redact.Set{}
	for _, name := range []string{"BITBUCKET_ACCESS_TOKEN", "BITBUCKET_OAUTH_CLIENT_SECRET", "BITBUCKET_RELAY_WEBHOOK_TOKEN",
		"BITBUCKET_RELAY_SIGNING_TOKEN", "GITLAB_TOKEN", "BITBUCKET_RELAY_STATUS_TOKEN", "BITBUCKET_RELAY_PUSH_SECRET", "BITBUCKET_MIRROR_TOKEN",
		"BITBUCKET_CI_TOKEN"} {
		secrets.Add(p.Env[name])
		secrets.Add(strings.TrimSpace(p.Env[name]))
	}
	secrets.AddBasic(p.Env["BITBUCKET_USERNAME"], strings.TrimSpace(p.Env["BITBUCKET_ACCESS_TOKEN"]))
	stdout, stderr := secrets.Writer(p.Stdout), secrets.Writer(p.Stderr)
	help := &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help"}
	app := &cli.App{
		Name: "bitbucket-status-relay", Usage: "GitLab pipeline webhooks in, Bitbucket build statuses out",
		Writer: stdout, ErrWriter: stderr, HideHelp: true, HideVersion: true, Flags: []cli.Flag{help},
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{fmt.Errorf("%v (see bitbucket-status-relay --help)", err)}
		},
		Action: func(c *cli.Context) error {
			if c.Bool("help") || c.NArg() == 0 || c.Args().First() == "help" {
				fmt.Fprint(stdout, helpText())
				return nil
			}
			return usageError{fmt.Errorf("unknown command %q: use serve, check, status, connect or version (see --help)", c.Args().First())}
		},
		Commands: []*cli.Command{
			{Name: "serve", Usage: "accept webhooks and post statuses", Action: func(c *cli.Context) error {
				return p.serve(c.Context, secrets, stderr)
			}},
			{Name: "check", Usage: "check the configuration and every route's credential; post nothing", Action: func(c *cli.Context) error {
				return p.check(c.Context, secrets, stdout, stderr)
			}},
			{Name: "status", Usage: "what the relay holds and did: the overview, or one commit's or project's statuses",
				Flags: []cli.Flag{
					help,
					&cli.StringFlag{Name: "commit", Usage: "a commit's statuses (a full or short hash)"},
					&cli.StringFlag{Name: "project", Usage: "a GitLab project's statuses (group/project)"},
					&cli.IntFlag{Name: "page", Value: 1, Usage: "the page of a project's statuses"},
					&cli.BoolFlag{Name: "json", Usage: "JSON, for scripts"},
				},
				Action: func(c *cli.Context) error {
					if c.Bool("help") {
						fmt.Fprint(stdout, statusHelp)
						return nil
					}
					return p.status(c, stdout)
				}},
			{Name: "connect", Usage: "set a Bitbucket repository up for GitLab CI/CD: project, mirror, variables, webhook",
				Flags: append([]cli.Flag{help}, connectFlags()...),
				Action: func(c *cli.Context) error {
					if c.Bool("help") {
						fmt.Fprint(stdout, connectHelpText())
						return nil
					}
					return p.connect(c, secrets, stdout, stderr)
				}},
			{Name: "version", Usage: "print the version", Action: func(*cli.Context) error {
				fmt.Fprintf(stdout, "bitbucket-status-relay %s\n", p.Version)
				return nil
			}},
		},
	}
	for _, cmd := range app.Commands {
		// A subcommand's unknown flag is a usage error too (exit 2), not a
		// failure; its --help is the program's (status has its own).
		cmd.OnUsageError = app.OnUsageError
		if cmd.Name != "status" && cmd.Name != "connect" {
			cmd.Flags = append(cmd.Flags, help)
			action := cmd.Action
			cmd.Action = func(c *cli.Context) error {
				if c.Bool("help") {
					fmt.Fprint(stdout, helpText())
					return nil
				}
				return action(c)
			}
		}
	}
	if len(args) > 0 && args[0] == "connect" {
		args = append([]string{"connect"}, flagsFirst(args[1:], connectFlags())...)
	}
	err := app.RunContext(ctx, append([]string{"bitbucket-status-relay"}, args...))
	var ue usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &stepFailed{}):
		return ExitFailed
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "bitbucket-status-relay: %v\n", err)
		return ExitUsage
	}
	fmt.Fprintf(stderr, "bitbucket-status-relay: %v\n", err)
	return ExitFailed
}

func (p *Program) configure(ctx context.Context, secrets *redact.Set) (*relay.Config, error) {
	e, err := relay.LoadEnv(ctx, p.Env)
	if err != nil {
		return nil, usageError{err}
	}
	cfg, err := relay.Resolve(e, func(name string) string { return p.Env[name] })
	if err != nil {
		return nil, usageError{err}
	}
	for _, s := range cfg.Secrets {
		secrets.Add(s)
	}
	return cfg, nil
}

func (p *Program) serve(ctx context.Context, secrets *redact.Set, stderr io.Writer) error {
	cfg, err := p.configure(ctx, secrets)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return usageError{fmt.Errorf("BITBUCKET_RELAY_LISTEN is %q: %v", cfg.Listen, err)}
	}
	r := relay.New(cfg, st, relay.Options{Version: p.Version, Transport: p.Transport, Log: stderr, Secrets: secrets})
	return r.Serve(ctx, ln)
}

// openStore opens PostgreSQL when BITBUCKET_RELAY_DATABASE_URL is set, else
// the embedded store in BITBUCKET_RELAY_DATA. PostgreSQL may be starting or
// restarting: the relay waits for it rather than failing a deployment.
func openStore(ctx context.Context, cfg *relay.Config, log io.Writer) (store.Store, error) {
	if cfg.DatabaseURL == "" {
		st, err := store.OpenSQLite(ctx, cfg.Data)
		if err != nil {
			return nil, fmt.Errorf("opening the store in %s (BITBUCKET_RELAY_DATA): %w", cfg.Data, err)
		}
		return st, nil
	}
	for wait := time.Second; ; wait = min(wait*2, 15*time.Second) {
		st, err := store.OpenPostgres(ctx, cfg.DatabaseURL)
		if err == nil {
			return st, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("opening the PostgreSQL store (BITBUCKET_RELAY_DATABASE_URL): %w", err)
		}
		fmt.Fprintf(log, "{\"level\":\"WARN\",\"msg\":\"PostgreSQL not reachable yet; retrying\",\"error\":%q,\"retry_in\":%q}\n", err.Error(), wait.String())
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

func (p *Program) check(ctx context.Context, secrets *redact.Set, stdout, stderr io.Writer) error {
	cfg, err := p.configure(ctx, secrets)
	if err != nil {
		return err
	}
	r := relay.New(cfg, nil, relay.Options{Version: p.Version, Transport: p.Transport, Log: stderr})
	if n := r.Check(ctx, stdout); n > 0 {
		return fmt.Errorf("%d check(s) failed", n)
	}
	fmt.Fprintln(stdout, "configuration OK")
	return nil
}

// status prints the overview, or a search, read from the store directly
// (as a kubectl exec into a replica would): any replica's store is the
// whole picture; what lives in one replica's memory is not shown.
func (p *Program) status(c *cli.Context, stdout io.Writer) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("status takes no arguments, got %q: use --commit SHA or --project PATH", strings.Join(c.Args().Slice(), " "))}
	}
	commit, project := c.String("commit"), c.String("project")
	if commit != "" && project != "" {
		return usageError{errors.New("give --commit or --project, not both")}
	}
	if kind, _ := relaystatus.Read(commit); commit != "" && kind != "commit" {
		return usageError{fmt.Errorf("--commit %q is not a commit hash: give 7 to 64 hex digits, or a GitLab or Bitbucket commit URL", commit)}
	}
	if kind, _ := relaystatus.Read(project); project != "" && kind != "project" {
		return usageError{fmt.Errorf("--project %q is not a GitLab project path: give group/project, or the project's URL", project)}
	}
	if c.Int("page") < 1 {
		return usageError{fmt.Errorf("--page %d: pages count from 1", c.Int("page"))}
	}
	e, err := relay.LoadEnv(c.Context, p.Env)
	if err != nil {
		return usageError{err}
	}
	st, err := openReader(c.Context, e)
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	if commit == "" && project == "" {
		o, err := relaystatus.ReadOverview(c.Context, st, now, nil)
		if err != nil {
			return fmt.Errorf("reading the store: %w", err)
		}
		if c.Bool("json") {
			return relaystatus.WriteJSON(stdout, o)
		}
		return o.WriteText(stdout)
	}
	r, err := relaystatus.Search(c.Context, st, commit+project, c.Int("page"), now, nil)
	if err != nil {
		return fmt.Errorf("reading the store: %w", err)
	}
	if c.Bool("json") {
		return relaystatus.WriteJSON(stdout, r)
	}
	return r.WriteText(stdout, now)
}

// openReader opens the store the relay's variables name, to read only.
func openReader(ctx context.Context, e relay.Env) (store.Store, error) {
	if url := strings.TrimSpace(e.DatabaseURL); url != "" {
		st, err := store.OpenPostgresReader(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("opening the PostgreSQL store (BITBUCKET_RELAY_DATABASE_URL): %w", err)
		}
		return st, nil
	}
	st, err := store.OpenSQLiteReader(ctx, e.Data)
	if err != nil {
		return nil, fmt.Errorf("%w (BITBUCKET_RELAY_DATA is %q; in the image, /data)", err, e.Data)
	}
	return st, nil
}

// statusHelp is status --help.
const statusHelp = `bitbucket-status-relay status: what the relay holds and did, read from its store (nothing is written).

Usage:
  bitbucket-status-relay status                        the overview: backlog, last sweep, each server's posts and failures
  bitbucket-status-relay status --commit SHA|URL       a commit's statuses, the failing first, with their history, and the
                                                       pipelines received for it and not reported (and why)
  bitbucket-status-relay status --project PATH|URL [--page N]
                                                       a GitLab project's statuses, 20 a page, newest first
  add --json for JSON (every key snake_case, every time UTC, lists never null)

A commit is 7 to 64 hex digits or a URL naming one (GitLab's .../-/commit/SHA, Bitbucket's .../commits/SHA); a project
is group/project (any letter case) or its GitLab URL. The store is BITBUCKET_RELAY_DATA's, or
BITBUCKET_RELAY_DATABASE_URL's.

Exit codes: 0 read (also when nothing is found: "No status for ..."; in JSON, total 0); 1 the store could not be read;
2 usage error.
`

func helpText() string {
	var b strings.Builder
	b.WriteString(`bitbucket-status-relay: GitLab pipeline webhooks in, Bitbucket build statuses out.

Usage:
  bitbucket-status-relay serve     accept webhooks on POST /webhook and post statuses
  bitbucket-status-relay check     check the configuration and every route's credential; post nothing
  bitbucket-status-relay status [--commit SHA | --project PATH] [--json]
                                   what the relay holds and did, read from its store
  bitbucket-status-relay connect REPO_URL [--gitlab-project GROUP/PROJECT] [--relay-url URL] [--dry-run]
                                   set a Bitbucket repository up for GitLab CI/CD (see connect --help)
  bitbucket-status-relay version   print the version

Endpoints: POST /webhook, GET /healthz (alive), GET /readyz (store usable, not shutting down), GET /metrics,
and with BITBUCKET_RELAY_STATUS_TOKEN, GET /status (the status page).

Environment (an empty variable counts as unset):
`)
	for _, v := range relay.Variables() {
		fmt.Fprintf(&b, "  %s", v.Name)
		if v.Default != "" {
			fmt.Fprintf(&b, " (default %s)", v.Default)
		}
		fmt.Fprintf(&b, "\n      %s\n", v.Help)
	}
	b.WriteString(`
Exit codes: 0 ok; 1 a check failed or the server failed; 2 configuration or usage error.
`)
	return b.String()
}

func init() { cli.HelpFlag = nil }
