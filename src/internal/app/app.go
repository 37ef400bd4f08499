// Package app is the command line: it reads the arguments and the
// environment, posts or checks a status, and turns every outcome into one
// line of output or an error that says what to change, with an exit code.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/explain"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitcheckout"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/redact"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
)

// Exit codes, documented in --help and the README.
const (
	ExitOK = 0
	// ExitFailed: Bitbucket or the network refused or failed, after retries.
	ExitFailed = 1
	// ExitUsage: a usage or configuration error, found before any request.
	ExitUsage = 2
	// ExitInternal: a bug in bitbucket-status.
	ExitInternal = 3
)

// ChildPipeline is CI_PIPELINE_SOURCE in a child pipeline (trigger: include:).
const ChildPipeline = "parent_pipeline"

// Program is one run's outside world, so tests can supply their own.
type Program struct {
	Version string
	// Env is the environment, as from os.Environ.
	Env    map[string]string
	Stdout io.Writer
	Stderr io.Writer
	// Transport sends HTTP requests; nil means a real one.
	Transport http.RoundTripper
	// Checkout reads the git working tree when not in GitLab CI.
	Checkout func() (gitcheckout.Checkout, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RetryDelay is the first retry's wait (1s); tests shorten it.
	RetryDelay time.Duration
}

// usageError marks a mistake in the invocation or configuration (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// Run runs the command line args (without the program name) and returns the
// exit code. Everything it prints passes through a filter that removes the
// secrets it was given, whatever path the text took.
func (p *Program) Run(ctx context.Context, args []string) (code int) {
	secrets := &redact.Set{}
	token := strings.TrimSpace(p.Env["BITBUCKET_ACCESS_TOKEN"])
	secrets.Add(p.Env["BITBUCKET_ACCESS_TOKEN"])
	secrets.Add(token)
	secrets.AddBasic(p.Env["BITBUCKET_USERNAME"], token)
	secrets.Add(strings.TrimSpace(p.Env["BITBUCKET_OAUTH_CLIENT_SECRET"]))
	stdout, stderr := secrets.Writer(p.Stdout), secrets.Writer(p.Stderr)

	defer func() {
		if v := recover(); v != nil {
			fmt.Fprintf(stderr, "bitbucket-status: internal error (a bug; please report it): %v\n", v)
			code = ExitInternal
		}
	}()

	r := &runner{Program: p, secrets: secrets, stdout: stdout, stderr: stderr}
	err := r.app().RunContext(ctx, append([]string{"bitbucket-status"}, args...))
	var ue usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "bitbucket-status: %v\n", err)
		return ExitUsage
	}
	fmt.Fprintf(stderr, "bitbucket-status: %v\n", err)
	return ExitFailed
}

// runner holds what the command actions share.
type runner struct {
	*Program
	secrets *redact.Set
	stdout  io.Writer
	stderr  io.Writer
}

func (r *runner) app() *cli.App {
	dryRun := &cli.BoolFlag{Name: "dry-run", Usage: "print the request instead of sending it (BITBUCKET_STATUS_DRY_RUN)"}
	// A help flag of this App's own: see init.
	help := &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help"}
	return &cli.App{
		Name:           "bitbucket-status",
		Usage:          "post a GitLab CI/CD result to a Bitbucket commit as a build status",
		Writer:         r.stdout,
		ErrWriter:      r.stderr,
		HideVersion:    true,
		HideHelp:       true,
		Flags:          []cli.Flag{dryRun, help, &cli.BoolFlag{Name: "version", Usage: "print the version"}},
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   onUsageError,
		Action:         r.post,
		Commands: []*cli.Command{
			{
				Name:         "check",
				Usage:        "check the credential and access to the repository; post nothing",
				Flags:        []cli.Flag{dryRun, help},
				HideHelp:     true,
				OnUsageError: onUsageError,
				Action:       r.check,
			},
			reportCommand(r, dryRun, help),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(*cli.Context) error {
					fmt.Fprintf(r.stdout, "bitbucket-status %s\n", r.Version)
					return nil
				},
			},
		},
	}
}

// urfave/cli adds its global HelpFlag to every App and command, and every run
// writes to it: a data race when tests run Apps in parallel. Each App has its
// own help flag instead, and the help text is bitbucket-status's own.
func init() { cli.HelpFlag = nil }

func onUsageError(_ *cli.Context, err error, _ bool) error {
	return usagef("%v (see bitbucket-status --help)", err)
}

func (r *runner) post(c *cli.Context) error {
	if c.Bool("help") || (c.NArg() == 1 && c.Args().First() == "help") {
		fmt.Fprint(r.stdout, helpText())
		return nil
	}
	if c.Bool("version") {
		fmt.Fprintf(r.stdout, "bitbucket-status %s\n", r.Version)
		return nil
	}
	env, err := config.Load(c.Context, r.Env)
	if err != nil {
		return usageError{err}
	}
	outcome, word, err := r.stateFrom(c, env)
	if err != nil {
		return err
	}
	if env.PipelineSource == ChildPipeline && env.StatusKey == "" {
		// The parent's running job posted under the project's key; a child's
		// result there would replace the parent's, which waits for the child
		// (strategy: depend) or not, as its author chose.
		fmt.Fprintf(r.stdout, "Nothing posted: this is a child pipeline (CI_PIPELINE_SOURCE=%s), and its parent pipeline's status covers it "+
			"(trigger it with strategy: depend for the parent to wait for it). To give the child a status of its own, set BITBUCKET_STATUS_KEY "+
			"(the component's status_key input), e.g. gitlab/$CI_PROJECT_PATH/<child name>.\n", ChildPipeline)
		return nil
	}
	run, err := r.resolve(c, env, outcome, word)
	if err != nil {
		return err
	}
	if run.DataCenter != nil && outcome.Final() {
		run.Status.Tests = r.testCounts(env)
	}
	client, target := r.client(run), targetOf(run)
	return r.execute(c, run, func() { target.DryRun(r.stdout, client, run.Commit, run.Status) }, func(ctx context.Context) error {
		posted, err := target.Post(ctx, client, run.Commit, run.Status)
		if err != nil {
			return fmt.Errorf("could not post %s for commit %s to %s: %s", run.Status.State, run.Commit, target.Where(), explain.Failure(err, run, true))
		}
		if posted.Notice != "" {
			fmt.Fprintf(r.stderr, "bitbucket-status: notice: %s\n", posted.Notice)
		}
		fmt.Fprintf(r.stdout, "Posted %s for commit %s to %s (key %q, %s)\n",
			run.Status.State, run.Commit, target.Where(), run.Status.Key, posted.Outcome)
		return nil
	})
}

// execute prints the request in a dry run; otherwise it makes sure there is
// a credential and calls send within the run's time budget.
func (r *runner) execute(c *cli.Context, run *config.Run, dryRun func(), send func(context.Context) error) error {
	if run.DryRun {
		dryRun()
		fmt.Fprintln(r.stdout, "(dry run: nothing was sent)")
		return nil
	}
	if err := run.RequireCredential(); err != nil {
		return usageError{err}
	}
	ctx, cancel := context.WithTimeout(c.Context, run.Timeout)
	defer cancel()
	return send(ctx)
}

// stateFrom reads STATE from the one argument, or BUILD_STATUS: the
// outcome, and the word as given (lower case), which the description
// follows ("was skipped", "waits for a manual action").
func (r *runner) stateFrom(c *cli.Context, env config.Env) (state.State, string, error) {
	if c.NArg() > 1 {
		return "", "", usagef("expected one STATE argument, got %d (%s): options go before STATE, as in bitbucket-status --dry-run running",
			c.NArg(), strings.Join(c.Args().Slice(), " "))
	}
	word, from := c.Args().First(), "STATE"
	if word == "" {
		word, from = env.BuildStatus, "BUILD_STATUS"
	}
	if word == "" {
		return "", "", usagef("no STATE: give one, as in bitbucket-status running, or set BUILD_STATUS; accepted: %s. "+
			"Commands: check, report, version; see --help", state.Accepted)
	}
	if strings.HasPrefix(word, "-") {
		return "", "", usagef("%q looks like an option, but options go before STATE: see bitbucket-status --help", word)
	}
	s, err := state.Parse(word)
	if err != nil {
		return "", "", usagef("%s: %v (or the commands check, report and version)", from, err)
	}
	return s, strings.ToLower(strings.TrimSpace(word)), nil
}

func (r *runner) check(c *cli.Context) error {
	if c.Bool("help") {
		fmt.Fprint(r.stdout, helpText())
		return nil
	}
	if c.NArg() > 0 {
		return usagef("check takes no arguments, got %q", strings.Join(c.Args().Slice(), " "))
	}
	env, err := config.Load(c.Context, r.Env)
	if err != nil {
		return usageError{err}
	}
	run, err := r.resolve(c, env, "", "")
	if err != nil {
		return err
	}
	client, target := r.client(run), targetOf(run)
	req := target.CheckRequest(run.Commit)
	return r.execute(c, run, func() { client.Print(r.stdout, req) }, func(ctx context.Context) error {
		if _, err := client.Do(ctx, req); err != nil {
			return fmt.Errorf("check failed for %s: %s", target.Where(), explain.Failure(err, run, false))
		}
		fmt.Fprintf(r.stdout, "OK: %s can read commit %s in %s (reading cannot prove the right to post; the first post will)\n",
			run.Auth, run.Commit, target.Where())
		return nil
	})
}

func (r *runner) resolve(c *cli.Context, env config.Env, outcome state.State, word string) (*config.Run, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	checkout := r.Checkout
	if checkout == nil {
		checkout = func() (gitcheckout.Checkout, error) { return gitcheckout.Read(c.Context, "") }
	}
	run, err := config.Resolve(env, config.Options{State: outcome, Word: word, DryRun: c.Bool("dry-run"), Checkout: checkout, Now: now()})
	if err != nil {
		return nil, usageError{err}
	}
	for _, n := range run.Notices {
		fmt.Fprintf(r.stderr, "bitbucket-status: notice: %s\n", n)
	}
	return run, nil
}

func (r *runner) client(run *config.Run) *bitbucket.Client {
	transport := r.Transport
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = http.ProxyFromEnvironment
		transport = t
	}
	return &bitbucket.Client{
		HTTP:      &http.Client{Transport: transport, CheckRedirect: noRedirects},
		Auth:      run.Auth,
		UserAgent: "bitbucket-status/" + r.Version,
		Log:       r.stderr,
		Secrets:   r.secrets,
		BaseDelay: r.RetryDelay,
		// One attempt may take a third of the budget, so a connection that
		// hangs leaves time for two more tries.
		AttemptTimeout: max(run.Timeout/3, 5*time.Second),
	}
}

// noRedirects: a redirect from an API is a misconfigured URL; following it
// would send the credential (Go keeps it for the same host) or the POST
// somewhere unintended.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// target is a repository on one kind of Bitbucket server.
type target interface {
	Post(ctx context.Context, c *bitbucket.Client, commit string, s bitbucket.Status) (bitbucket.Posted, error)
	DryRun(w io.Writer, c *bitbucket.Client, commit string, s bitbucket.Status)
	CheckRequest(commit string) bitbucket.Request
	ReportRequests(commit string, in bitbucket.Insights) []bitbucket.Request
	Where() string
}

func targetOf(run *config.Run) target {
	if run.DataCenter != nil {
		return run.DataCenter
	}
	return run.Cloud
}
