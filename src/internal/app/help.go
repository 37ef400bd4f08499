package app

import (
	"fmt"
	"strings"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
)

// helpText is the whole --help page. The variables come from config.Env's
// tags, so the page cannot forget one.
func helpText() string {
	var b strings.Builder
	b.WriteString(`bitbucket-status - post a GitLab CI/CD result to a Bitbucket commit as a build status

USAGE:
   bitbucket-status [--dry-run] STATE   post one status for the commit
   bitbucket-status check [--dry-run]   check the credential and access to the repository; post nothing
   bitbucket-status report [--dry-run] [--junit GLOB]... [--code-quality GLOB]... [--fail-on SEVERITY] [--key KEY] [--strict]
                                        publish JUnit and Code Quality files as Code Insights reports on the commit
   bitbucket-status version             print the version (also --version)

STATE (any letter case; with no STATE, BUILD_STATUS is read):
`)
	for _, line := range strings.Split(state.Accepted, "; ") {
		fmt.Fprintf(&b, "   %s\n", line)
	}
	b.WriteString(`
OPTIONS:
   --dry-run   print the exact request (credential redacted) and send nothing; needs no credential
   --help      show this help
   --version   print the version

REPORT OPTIONS (each also a variable, below):
   --junit GLOB            JUnit XML files, relative to the working directory; repeatable (BITBUCKET_JUNIT)
   --code-quality GLOB     GitLab Code Quality JSON files; repeatable (BITBUCKET_CODE_QUALITY)
   --fail-on SEVERITY      info, minor, major, critical or blocker (BITBUCKET_CODE_QUALITY_FAIL_ON, default major)
   --key KEY               the reports' keys start with KEY (BITBUCKET_REPORT_KEY)
   --strict                exit 1 when a report cannot be read or published (BITBUCKET_REPORT_STRICT)

ENVIRONMENT:
`)
	for _, v := range config.Variables() {
		fmt.Fprintf(&b, "   %s", v.Name)
		if v.Default != "" {
			fmt.Fprintf(&b, " (default %s)", v.Default)
		}
		fmt.Fprintf(&b, "\n       %s\n", v.Help)
	}
	b.WriteString(`   SSL_CERT_FILE, SSL_CERT_DIR, HTTPS_PROXY, NO_PROXY
       Trusted CA certificates and proxy, as for any Go program.

EXIT CODES:
   0   posted (or, with --dry-run, printed); check: access confirmed; report: published, or warned
   1   Bitbucket or the network refused or failed, after retries (report: only with --strict)
   2   usage or configuration error, found before any request was sent
   3   internal error (a bug)
`)
	return b.String()
}
