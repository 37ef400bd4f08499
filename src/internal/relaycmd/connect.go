package relaycmd

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/connect"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/redact"
)

// connectFlags are connect's flags.
func connectFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "gitlab-project", Usage: "the GitLab project (GROUP/PROJECT); default, on Cloud: WORKSPACE/REPO"},
		&cli.StringFlag{Name: "relay-url", Usage: "the relay's base URL: a push webhook to its /bitbucket is made"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print the plan (each request that would change something); write nothing"},
		&cli.BoolFlag{Name: "force", Usage: "change a project that mirrors another repository, or has commits of its own"},
		&cli.BoolFlag{Name: "remove-token-webhook", Usage: "delete webhooks that call GitLab's mirror API with a token in the URL"},
		&cli.BoolFlag{Name: "verify", Usage: "start a mirror update and wait for it even when nothing changed"},
		&cli.BoolFlag{Name: "update-credentials", Usage: "send the mirror's credentials even when its last update worked (a rotated token)"},
		&cli.DurationFlag{Name: "wait", Value: 6 * time.Minute, Usage: "how long to wait for the mirror update that verifies the loop"},
		&cli.StringFlag{Name: "file", Usage: "repositories to set up, one a line: URL [GITLAB_PATH]; - reads standard input"},
		&cli.IntFlag{Name: "concurrency", Value: 4, Usage: "with --file: repositories set up at once (1 to 16)"},
	}
}

// flagsFirst moves the arguments that are not flags after the flags, as
// the usage shows them (connect URL --gitlab-project P): the CLI library
// stops reading flags at the first argument. A flag's value stays with it;
// after "--" nothing moves.
func flagsFirst(args []string, flags []cli.Flag) []string {
	valued := map[string]bool{}
	for _, f := range flags {
		if _, isBool := f.(*cli.BoolFlag); !isBool {
			for _, name := range f.Names() {
				valued[name] = true
			}
		}
	}
	var front, back []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(append(front, back...), args[i:]...)
		case strings.HasPrefix(a, "-") && a != "-":
			front = append(front, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && valued[name] && i+1 < len(args) {
				i++
				front = append(front, args[i])
			}
		default:
			back = append(back, a)
		}
	}
	return append(front, back...)
}

// connect is the connect command: one repository (an argument) or many
// (--file).
func (p *Program) connect(c *cli.Context, secrets *redact.Set, stdout, stderr io.Writer) error {
	e, err := connect.LoadEnv(c.Context, p.Env)
	if err != nil {
		return usageError{err}
	}
	var targets []connect.Target
	switch file := c.String("file"); {
	case file != "" && c.NArg() > 0:
		return usageError{errors.New("give a repository URL or --file, not both")}
	case file != "" && c.String("gitlab-project") != "":
		return usageError{errors.New("--gitlab-project names one repository's project: with --file, put it after each URL")}
	case file != "":
		in := p.Stdin
		if file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return usageError{fmt.Errorf("--file: %v", err)}
			}
			defer f.Close()
			in = f
		}
		if in == nil {
			return usageError{errors.New("--file -: no standard input")}
		}
		if targets, err = connect.ReadTargets(in, e.ServerURL); err != nil {
			return usageError{fmt.Errorf("--file %s: %v", file, err)}
		}
	case c.NArg() == 1:
		t, err := connect.NewTarget(c.Args().First(), c.String("gitlab-project"), e.ServerURL)
		if err != nil {
			return usageError{err}
		}
		targets = []connect.Target{t}
	default:
		return usageError{errors.New("give the repository's URL (connect https://bitbucket.org/WORKSPACE/REPO.git --gitlab-project GROUP/PROJECT), " +
			"or --file with one a line")}
	}
	if n := c.Int("concurrency"); n < 1 || n > 16 {
		return usageError{fmt.Errorf("--concurrency %d: give 1 to 16", n)}
	}
	if c.Duration("wait") <= 0 {
		return usageError{fmt.Errorf("--wait %s: give a positive duration, such as 6m", c.Duration("wait"))}
	}
	relayURL := strings.TrimRight(c.String("relay-url"), "/")
	res, err := connect.Resolve(e, relayURL, targets)
	if err != nil {
		return usageError{err}
	}
	for _, s := range []string{res.GitLabToken, res.REST.Token, res.REST.ClientSecret, res.Mirror.Token, res.CI.Token, res.PushSecret} {
		secrets.Add(s)
	}
	secrets.AddBasic(res.REST.Username, res.REST.Token)
	httpClient := &http.Client{Timeout: 60 * time.Second, Transport: p.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	auth := bitbucket.Auth{Kind: bitbucket.Bearer, Token: res.REST.Token}
	switch {
	case res.REST.ClientID != "":
		auth = bitbucket.Auth{Kind: bitbucket.OAuth, ClientID: res.REST.ClientID, ClientSecret: res.REST.ClientSecret, TokenURL: res.OAuthTokenURL}
	case res.REST.Username != "":
		auth = bitbucket.Auth{Kind: bitbucket.Basic, Username: res.REST.Username, Token: res.REST.Token}
	}
	opts := &connect.Options{
		GitLab: &gitlab.Client{BaseURL: res.GitLabURL, Token: res.GitLabToken, HTTP: httpClient, UserAgent: "bitbucket-status-relay/" + p.Version},
		Bitbucket: &bitbucket.Client{HTTP: httpClient, Auth: auth, UserAgent: "bitbucket-status-relay/" + p.Version, Log: stderr, Secrets: secrets,
			BaseDelay: time.Second, MaxDelay: 10 * time.Second, AttemptTimeout: 30 * time.Second, MaxAttempts: 4},
		CloudAPI: res.APIURL, Mirror: res.Mirror, CI: res.CI, MirrorToken: res.MirrorToken, MirrorUser: res.MirrorUser,
		PushSecret: res.PushSecret, RelayURL: relayURL, DryRun: c.Bool("dry-run"), Force: c.Bool("force"),
		RemoveTokenWebhook: c.Bool("remove-token-webhook"), Verify: c.Bool("verify"), UpdateCredentials: c.Bool("update-credentials"),
		Wait: c.Duration("wait"), Poll: p.connectPoll, Log: stderr, Secrets: secrets,
	}
	if p.Terminal {
		opts.Progress = stderr
	}
	if c.String("file") != "" {
		return p.connectMany(c, opts, targets, stdout)
	}
	return connectOne(c, opts, targets[0], stdout)
}

func connectOne(c *cli.Context, opts *connect.Options, t connect.Target, stdout io.Writer) error {
	fmt.Fprintf(stdout, "connect %s → GitLab %s (%s)\n", t.CloneURL, t.GitLabPath, opts.GitLab.BaseURL)
	res := connect.One(c.Context, opts, t, func(step, text string) {
		fmt.Fprintf(stdout, "  %-10s %s\n", step, text)
	})
	if len(res.Plan) > 0 {
		fmt.Fprintln(stdout, "\nThe requests a run would send (secrets redacted):")
		for _, pl := range res.Plan {
			fmt.Fprintf(stdout, "  %s %s\n", pl.Method, pl.URL)
			if pl.Body != "" {
				fmt.Fprintf(stdout, "      %s\n", pl.Body)
			}
		}
	}
	switch {
	case res.Err != nil:
		fmt.Fprintf(stdout, "  %-10s FAILED: %v\n", res.FailedStep, res.Err)
		fmt.Fprintf(stdout, "FAILED at %s. Done: %s. Not done: %s. Run the same command again to finish: every step checks what is there first.\n",
			res.FailedStep, strings.Join(orNone(res.Done()), ", "), strings.Join(res.NotDone(), ", "))
		return stepFailed{}
	case opts.DryRun && res.Changes > 0:
		fmt.Fprintf(stdout, "dry run: %d change(s) to make; nothing was written.\n", res.Changes)
	case opts.DryRun:
		fmt.Fprintln(stdout, "dry run: nothing to change.")
	case res.Changes > 0:
		fmt.Fprintf(stdout, "done: %d change(s).\n", res.Changes)
	default:
		fmt.Fprintln(stdout, "nothing to change.")
	}
	return nil
}

func (p *Program) connectMany(c *cli.Context, opts *connect.Options, targets []connect.Target, stdout io.Writer) error {
	results := connect.Many(c.Context, opts, targets, c.Int("concurrency"), func(r connect.Result) {
		fmt.Fprintln(stdout, r.Summary(opts.DryRun))
	})
	changed, unchanged, failed := 0, 0, 0
	for _, r := range results {
		switch {
		case r.Err != nil:
			failed++
		case r.Changes > 0:
			changed++
		default:
			unchanged++
		}
	}
	verb := "set up"
	if opts.DryRun {
		verb = "with changes to make (dry run: nothing was written)"
	}
	fmt.Fprintf(stdout, "%d repositories: %d %s, %d unchanged, %d failed\n", len(results), changed, verb, unchanged, failed)
	if failed > 0 {
		fmt.Fprintln(stdout, "Run the same command again to finish the failed ones: every step checks what is there first.")
		return stepFailed{}
	}
	return nil
}

func orNone(steps []string) []string {
	if len(steps) == 0 {
		return []string{"none"}
	}
	return steps
}

// stepFailed is a connect run whose failure was printed: exit 1, nothing
// more to say.
type stepFailed struct{}

func (stepFailed) Error() string { return "a step failed" }

// connectHelpText is connect --help: the text, then every variable.
func connectHelpText() string {
	var b strings.Builder
	b.WriteString(connectHelp)
	b.WriteString("\nVariables:\n")
	for _, v := range connect.Variables() {
		fmt.Fprintf(&b, "  %s", v.Name)
		if v.Default != "" {
			fmt.Fprintf(&b, " (default %s)", v.Default)
		}
		fmt.Fprintf(&b, "\n      %s\n", v.Help)
	}
	return b.String()
}

// connectHelp is the start of connect --help.
const connectHelp = `bitbucket-status-relay connect: set a Bitbucket repository up for GitLab CI/CD, every step of GitLab's guide.

Usage:
  bitbucket-status-relay connect REPO_URL [--gitlab-project GROUP/PROJECT] [--relay-url https://relay.example.com] [--dry-run]
  bitbucket-status-relay connect --file repos.txt [--concurrency 4] ...       one repository a line: URL [GITLAB_PATH]
  bitbucket-status-relay connect --file - ...                                 the list from standard input

Steps, each reading first and writing only what differs (a second run changes nothing):
  project    find the GitLab project, or create it as "Run CI/CD for external repository" does (private; issues,
             merge requests, wiki and snippets off)
  mirror     pull the repository, with the credential its kind needs (x-token-auth for a Cloud access token,
             x-bitbucket-api-token-auth for an API token, the user for Data Center), pipelines for mirror updates
             on, diverged branches overwritten; a project mirroring another repository, or with commits of its own,
             only with --force
  variables  BITBUCKET_ACCESS_TOKEN (masked, hidden where new on GitLab 17.6+), BITBUCKET_USERNAME where the token
             needs one, BITBUCKET_REPO_URL where the names differ; a stale BITBUCKET_USERNAME deleted
  webhook    with --relay-url: repo:push (Data Center: repo:refs_changed) to RELAY/bitbucket, signed with
             BITBUCKET_RELAY_PUSH_SECRET; webhooks holding a GitLab token reported (--remove-token-webhook deletes them)
  verify     after a change (or with --verify): start a mirror update, wait (--wait), say what GitLab fetched

Environment: GITLAB_URL, GITLAB_TOKEN (api scope; its user may create projects in the group, or is a Maintainer of
the project); BITBUCKET_ACCESS_TOKEN [+ BITBUCKET_USERNAME] or BITBUCKET_OAUTH_CLIENT_ID/_SECRET (manages the
webhook: the webhook scope); BITBUCKET_SERVER_URL for Data Center; BITBUCKET_RELAY_PUSH_SECRET with --relay-url;
optionally BITBUCKET_MIRROR_TOKEN [+ _USERNAME] for the mirror and BITBUCKET_CI_TOKEN [+ _USERNAME] for the
variables, when not the BITBUCKET_* credential. Secrets are read from the environment only, never printed.

Flags:
  --gitlab-project GROUP/PROJECT   the GitLab project (default on Cloud: WORKSPACE/REPO)
  --relay-url URL                  make the push webhook to the relay; without it GitLab fetches every 30 minutes
  --dry-run                        print each request that would change something (secrets redacted); write nothing
  --force                          change a project that mirrors another repository or has commits of its own
  --remove-token-webhook           delete webhooks that call GitLab's mirror API with a token in their URL
  --verify                         start a mirror update even when nothing changed
  --update-credentials             send the mirror's credentials even when its last update worked
  --wait DURATION                  bound of the verifying wait (default 6m: GitLab's interval is 5 minutes)
  --file FILE, --concurrency N     many repositories, N at once (default 4, at most 16); a GitLab 429 pauses all

Exit codes: 0 done or nothing to change; 1 a step failed (named, with what was done and what was not: run again
to finish); 2 usage or configuration (nothing was written).
`
