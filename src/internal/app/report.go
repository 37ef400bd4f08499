package app

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/codequality"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/explain"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/globfiles"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/junit"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/sourcetree"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/statuskey"
)

func reportCommand(r *runner, dryRun, help cli.Flag) *cli.Command {
	return &cli.Command{
		Name:  "report",
		Usage: "publish JUnit and Code Quality files as Code Insights reports on the commit",
		Flags: []cli.Flag{dryRun, help,
			&cli.StringSliceFlag{Name: "junit", Usage: "JUnit XML files (a glob; repeatable) (BITBUCKET_JUNIT)"},
			&cli.StringSliceFlag{Name: "code-quality", Usage: "GitLab Code Quality JSON files (a glob; repeatable) (BITBUCKET_CODE_QUALITY)"},
			&cli.StringFlag{Name: "fail-on", Usage: "severity at which the code quality report fails (BITBUCKET_CODE_QUALITY_FAIL_ON)"},
			&cli.StringFlag{Name: "key", Usage: "start of the reports' keys (BITBUCKET_REPORT_KEY)"},
			&cli.BoolFlag{Name: "strict", Usage: "exit 1 when a report cannot be read or published (BITBUCKET_REPORT_STRICT)"},
		},
		HideHelp:     true,
		OnUsageError: onUsageError,
		Action:       r.report,
	}
}

// reportOptions are report's settings, from its flags or the environment.
type reportOptions struct {
	junit, codeQuality []string
	failOn             insights.Severity
	key                string
	strict             bool
}

func reportOptionsFrom(c *cli.Context, env config.Env) (reportOptions, error) {
	o := reportOptions{junit: globs(c.StringSlice("junit"), env.JUnit), codeQuality: globs(c.StringSlice("code-quality"), env.CodeQuality),
		key: env.ReportKey, strict: c.Bool("strict")}
	if c.IsSet("key") {
		o.key = c.String("key")
	}
	failOn, from := env.CodeQualityFailOn, "BITBUCKET_CODE_QUALITY_FAIL_ON"
	if c.IsSet("fail-on") {
		failOn, from = c.String("fail-on"), "--fail-on"
	}
	sev, ok := insights.ParseSeverity(failOn)
	if !ok {
		return o, usagef("%s is %q, not a severity: use one of %s", from, failOn, insights.SeverityNames())
	}
	o.failOn = sev
	if env.ReportStrict != "" && !c.IsSet("strict") {
		strict, err := strconv.ParseBool(env.ReportStrict)
		if err != nil {
			return o, usagef("BITBUCKET_REPORT_STRICT is %q: use true or false", env.ReportStrict)
		}
		o.strict = strict
	}
	if strings.ContainsAny(o.key, "/?#% ") {
		return o, usagef("the report key %q holds '/', '?', '#', '%%' or a space, which a URL path does not carry as they are: use letters, digits and . _ ~ -", o.key)
	}
	if len(o.junit) == 0 && len(o.codeQuality) == 0 {
		return o, usagef("report: nothing to publish: give --junit GLOB or --code-quality GLOB (or set BITBUCKET_JUNIT or BITBUCKET_CODE_QUALITY)")
	}
	return o, nil
}

// globs: the flags' values, each possibly several space-separated globs,
// else the variable's.
func globs(flags []string, variable string) []string {
	if len(flags) == 0 {
		return strings.Fields(variable)
	}
	var out []string
	for _, f := range flags {
		out = append(out, strings.Fields(f)...)
	}
	return out
}

func (r *runner) report(c *cli.Context) error {
	if c.Bool("help") {
		fmt.Fprint(r.stdout, helpText())
		return nil
	}
	if c.NArg() > 0 {
		return usagef("report takes no arguments, got %q: give files with --junit and --code-quality", strings.Join(c.Args().Slice(), " "))
	}
	env, err := config.Load(c.Context, r.Env)
	if err != nil {
		return usageError{err}
	}
	o, err := reportOptionsFrom(c, env)
	if err != nil {
		return err
	}
	run, err := r.resolve(c, env, "", "")
	if err != nil {
		return err
	}
	reports, problems := r.readReports(env, run, o)
	client, target := r.client(run), targetOf(run)
	err = r.execute(c, run, func() {
		for _, in := range reports {
			for i, req := range target.ReportRequests(run.Commit, in) {
				if i > 0 {
					fmt.Fprintln(r.stdout)
				}
				client.Print(r.stdout, req)
			}
			fmt.Fprintln(r.stdout)
		}
	}, func(ctx context.Context) error {
		for _, in := range reports {
			reqs := target.ReportRequests(run.Commit, in)
			if _, err := client.Publish(ctx, reqs, 1); err != nil { // Do retries within the run's budget
				problems++
				fmt.Fprintf(r.stderr, "bitbucket-status: warning: could not publish the %s report for commit %s to %s: %s\n",
					kindName(in.Report.Kind), run.Commit, target.Where(), explain.Failure(err, run, true))
				continue
			}
			fmt.Fprintf(r.stdout, "Published the %s report for commit %s to %s (key %q, %s, %s, %s): %s\n",
				kindName(in.Report.Kind), run.Commit, target.Where(), in.Key, passedOrFailed(in.Report), annotations(in.Report),
				insights.Plural(len(reqs), "request"), in.Report.Summary)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if problems > 0 && o.strict {
		return fmt.Errorf("%s (above); failing as BITBUCKET_REPORT_STRICT or --strict asks", insights.Plural(problems, "report problem"))
	}
	return nil
}

func kindName(k insights.Kind) string {
	if k == insights.Tests {
		return "test"
	}
	return "code quality"
}

func passedOrFailed(rep insights.Report) string {
	switch {
	case rep.Neutral:
		return "neither passed nor failed"
	case rep.Passed:
		return "passed"
	}
	return "failed"
}

func annotations(rep insights.Report) string {
	n := min(len(rep.Findings), insights.MaxFindings)
	s := insights.Plural(n, "annotation")
	if rep.Omitted > 0 {
		s += fmt.Sprintf(", %d left out", rep.Omitted)
	}
	return s
}

// readReports reads the files into at most one report of each kind. A
// file that cannot be read is a warning (and a problem counted); the report
// still goes with the files that could be read, failed and saying which
// could not.
func (r *runner) readReports(env config.Env, run *config.Run, o reportOptions) ([]bitbucket.Insights, int) {
	paths := workspacePaths(env)
	link := func(tab string) string {
		u, err := url.Parse(env.PipelineURL)
		if env.PipelineURL == "" || err != nil {
			return run.Status.URL
		}
		return u.JoinPath(tab).String()
	}
	problems := 0
	var out []bitbucket.Insights
	if len(o.junit) > 0 {
		jr := &junit.Reader{Paths: paths}
		files, unread := r.readEach(paths.Root, "--junit", o.junit, jr.ReadFile)
		problems += len(unread)
		if files > 0 || len(unread) > 0 {
			rep := jr.Report(link("test_report"))
			markUnread(&rep, unread)
			rep.Scrub(r.secrets.Scrub)
			out = append(out, bitbucket.Insights{Key: statuskey.Report(env.ProjectPath, string(insights.Tests), o.key), Report: rep})
		}
	}
	if len(o.codeQuality) > 0 {
		cr := &codequality.Reader{Paths: paths, Warn: func(msg string) { fmt.Fprintf(r.stderr, "bitbucket-status: warning: %s\n", msg) }}
		files, unread := r.readEach(paths.Root, "--code-quality", o.codeQuality, cr.ReadFile)
		problems += len(unread)
		if files > 0 || len(unread) > 0 {
			rep := cr.Report(link("codequality_report"), o.failOn)
			markUnread(&rep, unread)
			rep.Scrub(r.secrets.Scrub)
			out = append(out, bitbucket.Insights{Key: statuskey.Report(env.ProjectPath, string(insights.CodeQuality), o.key), Report: rep})
		}
	}
	return out, problems
}

// readEach reads every file the globs match; it returns how many were read
// and the errors of those that could not be.
func (r *runner) readEach(dir, flag string, patterns []string, read func(string) error) (int, []string) {
	files := 0
	var unread []string
	seen := map[string]bool{}
	for _, pattern := range patterns {
		matches, err := globfiles.Match(dir, pattern)
		if err != nil {
			unread = append(unread, fmt.Sprintf("%s: not a glob: %v", pattern, err))
			fmt.Fprintf(r.stderr, "bitbucket-status: warning: %s %q is not a glob: %v\n", flag, pattern, err)
			continue
		}
		if len(matches) == 0 {
			fmt.Fprintf(r.stderr, "bitbucket-status: warning: %s %q matches no file in %s: is the file listed in the test job's artifacts:paths (not only artifacts:reports), and does this job download its artifacts?\n",
				flag, pattern, dir)
		}
		for _, m := range matches {
			if seen[m] {
				continue
			}
			seen[m] = true
			if err := read(m); err != nil {
				msg := strings.Replace(err.Error(), dir+string(filepath.Separator), "", 1)
				unread = append(unread, msg)
				fmt.Fprintf(r.stderr, "bitbucket-status: warning: could not read %s\n", msg)
				continue
			}
			files++
		}
	}
	return files, unread
}

// markUnread fails a report some of whose files could not be read, and
// says which: a broken report file often means a run that crashed.
func markUnread(rep *insights.Report, unread []string) {
	if len(unread) == 0 {
		return
	}
	rep.Passed, rep.Neutral = false, false
	rep.Summary = fmt.Sprintf("%s could not be read: %s. %s", insights.Plural(len(unread), "report file"), strings.Join(unread, "; "), rep.Summary)
}

// workspacePaths: files are found in the working directory (where
// artifacts land); paths written in the reports are made relative to
// CI_PROJECT_DIR, where the test job ran, or to the part after the
// project's path (CI_PROJECT_PATH) where a runner put it elsewhere. A path
// inside the repository is the repository's whether or not the file is at
// hand (the component's result jobs hold only the report files); a file
// named without a path (Java's, Kotlin's, .NET's other machine's) is found
// in the checkout when report runs where one is (the test job itself).
func workspacePaths(env config.Env) insights.Paths {
	cwd, _ := os.Getwd()
	tree := sourcetree.New(cwd)
	// Many failures name the same few files: each is looked up once.
	known := map[string]bool{}
	return insights.Paths{ProjectDir: cmp.Or(env.ProjectDir, cwd), ProjectPath: env.ProjectPath, Root: cwd, Find: tree.Find,
		GoModule: sourcetree.GoModule(cwd), Exists: func(rel string) bool {
			exists, ok := known[rel]
			if !ok {
				info, err := os.Stat(filepath.Join(cwd, filepath.FromSlash(rel)))
				exists = err == nil && info.Mode().IsRegular()
				if len(known) < 10_000 {
					known[rel] = exists
				}
			}
			return exists
		}}
}

// testCounts reads BITBUCKET_JUNIT's files for the counts the final status
// carries on Data Center; nil when there are none or one cannot be read
// (the status must not claim counts it does not have).
func (r *runner) testCounts(env config.Env) *insights.TestCounts {
	patterns := strings.Fields(env.JUnit)
	if len(patterns) == 0 {
		return nil
	}
	paths := workspacePaths(env)
	jr := &junit.Reader{Paths: paths, Limit: 1}
	files, unread := 0, 0
	for _, pattern := range patterns {
		matches, _ := globfiles.Match(paths.Root, pattern)
		for _, m := range matches {
			if err := jr.ReadFile(m); err != nil {
				unread++
				continue
			}
			files++
		}
	}
	if files == 0 || unread > 0 {
		return nil
	}
	c := jr.Counts()
	return &c
}
