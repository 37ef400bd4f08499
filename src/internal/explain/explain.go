// Package explain turns a failed Bitbucket request into what happened and
// what to change, naming the variables to set. The job binary prints it; the
// relay logs it.
package explain

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
)

const appPasswordsGone = "If it holds an app password: app passwords stopped working on 28 Jul 2026; " +
	"create an API token (with BITBUCKET_USERNAME set to your Atlassian account email) or a repository access token instead."

// Failure turns a failed request into what happened and what to change.
// posting is false for the check command, which only reads.
func Failure(err error, run *config.Run, posting bool) string {
	var oauth *bitbucket.OAuthError
	var he *bitbucket.HTTPError
	var te *bitbucket.TransportError
	switch {
	case errors.As(err, &oauth) && errors.As(err, &he):
		return fmt.Sprintf("Bitbucket gave no OAuth access token (%s)%s.\n"+
			"Check BITBUCKET_OAUTH_CLIENT_ID and BITBUCKET_OAUTH_CLIENT_SECRET: they are the consumer's Key and Secret, "+
			"and the consumer must be private (\"This is a private consumer\"), which the client-credentials grant requires.",
			statusText(he.StatusCode), said(he))
	case errors.As(err, &oauth) && errors.As(err, &te):
		return explainTransport(te, "BITBUCKET_OAUTH_TOKEN_URL", run)
	case errors.As(err, &oauth):
		return fmt.Sprintf("%v.\nCheck BITBUCKET_OAUTH_TOKEN_URL: it must be Bitbucket's token endpoint.", err)
	case errors.As(err, &he):
		return explainHTTP(he, run, posting)
	case errors.As(err, &te):
		return explainTransport(te, run.From.Server, run)
	}
	return err.Error()
}

func explainHTTP(he *bitbucket.HTTPError, run *config.Run, posting bool) string {
	head := fmt.Sprintf("Bitbucket answered %s%s.", statusText(he.StatusCode), said(he))
	switch code := he.StatusCode; {
	case code == http.StatusUnauthorized:
		return "Bitbucket rejected the credential (" + statusText(code) + ")" + said(he) + ".\n" + explainUnauthorized(run)
	case code == http.StatusForbidden:
		return "Bitbucket refused the request (" + statusText(code) + ")" + said(he) + ".\n" + explainForbidden(run, posting)
	case code == http.StatusNotFound:
		return explainNotFound(he, run)
	case code == http.StatusBadRequest || code == http.StatusUnprocessableEntity:
		return fmt.Sprintf("Bitbucket rejected the status (%s)%s.\n%s", statusText(code), said(he), fieldHint(he))
	case code == http.StatusTooManyRequests && he.BudgetSpent:
		limit := "Bitbucket Cloud allows 1,000 requests an hour per token, user or OAuth consumer"
		if run.DataCenter != nil {
			limit = "the server's administrators set Data Center's limits"
		}
		return head + "\n" + waitTooLong(he, run) + fmt.Sprintf("The credential's rate limit is used up (%d attempt%s; %s). "+
			"Wait and retry the job, raise BITBUCKET_STATUS_TIMEOUT (now %s) to retry for longer, or give this project a token of its own.",
			he.Attempts, plural(he.Attempts), limit, run.Timeout)
	case code >= 500 && he.BudgetSpent:
		return head + "\n" + waitTooLong(he, run) + fmt.Sprintf("Bitbucket kept failing (%d attempt%s within BITBUCKET_STATUS_TIMEOUT, %s): it may be down "+
			"(https://bitbucket.status.atlassian.com for Cloud). Retry the job later, or raise BITBUCKET_STATUS_TIMEOUT to wait longer.",
			he.Attempts, plural(he.Attempts), run.Timeout)
	}
	return head + "\nCheck " + run.From.Server + " and the repository settings; this answer was not expected."
}

func explainUnauthorized(run *config.Run) string {
	a := run.Auth
	if run.DataCenter != nil {
		if a.Kind == bitbucket.Basic {
			return fmt.Sprintf("It was sent as HTTP Basic with BITBUCKET_USERNAME=%q: check that BITBUCKET_ACCESS_TOKEN holds that user's "+
				"personal access token or password, not expired. For an HTTP access token, unset BITBUCKET_USERNAME so it is sent as Bearer.", a.Username)
		}
		return "It was sent as a Bearer token (BITBUCKET_USERNAME is unset), as HTTP access tokens are: check that BITBUCKET_ACCESS_TOKEN " +
			"is an HTTP access token of project " + run.DataCenter.Project + " or repository " + run.DataCenter.Slug +
			" (or a personal one) and has not expired. For a password, set BITBUCKET_USERNAME to the user name."
	}
	switch a.Kind {
	case bitbucket.Basic:
		if !strings.Contains(a.Username, "@") {
			return fmt.Sprintf("It was sent as HTTP Basic with BITBUCKET_USERNAME=%q, which is not an email address. "+
				"A Bitbucket Cloud API token needs your Atlassian account email as the user name: set BITBUCKET_USERNAME to it.\n"+
				"%s\nIf it holds a repository, project or workspace access token: unset BITBUCKET_USERNAME, so it is sent as Bearer.",
				a.Username, appPasswordsGone)
		}
		return fmt.Sprintf("It was sent as HTTP Basic with BITBUCKET_USERNAME=%q, for an API token: check that BITBUCKET_ACCESS_TOKEN is an "+
			"API token of that Atlassian account, not expired (they last at most a year) or revoked.\n"+
			"%s\nIf it holds a repository, project or workspace access token: unset BITBUCKET_USERNAME, so it is sent as Bearer.",
			a.Username, appPasswordsGone)
	case bitbucket.OAuth:
		return "The access token fetched for BITBUCKET_OAUTH_CLIENT_ID was refused: check that the OAuth consumer has the Repositories: Read permission."
	}
	return "It was sent as a Bearer token (BITBUCKET_USERNAME is unset), which is right for a repository, project or workspace " +
		"access token: check that BITBUCKET_ACCESS_TOKEN holds one that has access to this repository and is not revoked or expired.\n" +
		"If it holds an API token: set BITBUCKET_USERNAME to your Atlassian account email, so it is sent with HTTP Basic.\n" + appPasswordsGone
}

func explainForbidden(run *config.Run, posting bool) string {
	var b strings.Builder
	if run.DataCenter != nil {
		fmt.Fprintf(&b, "The credential works but may not do this on %s/%s: give BITBUCKET_ACCESS_TOKEN a token (or user) "+
			"with at least Repository read permission on it.", run.DataCenter.Project, run.DataCenter.Slug)
	} else {
		fmt.Fprintf(&b, "The credential works but may not do this on %s/%s. It may lack the scope: give BITBUCKET_ACCESS_TOKEN "+
			"an access token with the repository scope (Repositories: Read), or an API token with read:repository:bitbucket.",
			run.Cloud.Workspace, run.Cloud.Slug)
	}
	if posting {
		fmt.Fprintf(&b, "\nOr the status key %q was first posted by another identity: only the account that created a status "+
			"(or a repository admin) may overwrite it. Post with that credential again, or set BITBUCKET_STATUS_KEY to a new key.", run.Status.Key)
	}
	return b.String()
}

func explainNotFound(he *bitbucket.HTTPError, run *config.Run) string {
	var b strings.Builder
	if dc := run.DataCenter; dc != nil {
		fmt.Fprintf(&b, "Bitbucket Data Center at %s found no project %q, repository %q or commit %s (%s)%s.\n",
			dc.Server, dc.Project, dc.Slug, run.Commit, statusText(he.StatusCode), said(he))
		fmt.Fprintf(&b, "The project key came from %s and the slug from %s: set BITBUCKET_PROJECT and BITBUCKET_REPOSITORY "+
			"(or BITBUCKET_REPO_URL) to the project key and repository slug; the server URL came from %s.\n", run.From.Owner, run.From.Slug, run.From.Server)
	} else {
		fmt.Fprintf(&b, "Bitbucket found no repository %s/%s or no commit %s in it (%s)%s.\n",
			run.Cloud.Workspace, run.Cloud.Slug, run.Commit, statusText(he.StatusCode), said(he))
		fmt.Fprintf(&b, "The workspace came from %s and the slug from %s: set BITBUCKET_NAMESPACE and BITBUCKET_REPOSITORY "+
			"(or BITBUCKET_REPO_URL) to the Bitbucket workspace and repository slug.\n", run.From.Owner, run.From.Slug)
	}
	fmt.Fprintf(&b, "If they are right: the commit (from %s) may not be on Bitbucket yet, or the credential cannot see this private repository.", run.From.Commit)
	return b.String()
}

// fieldVariables maps a status field Bitbucket may complain about to the
// variable that sets it.
var fieldVariables = map[string]string{
	"key": "BITBUCKET_STATUS_KEY", "name": "BITBUCKET_STATUS_NAME", "description": "BITBUCKET_STATUS_DESCRIPTION",
	"url": "BITBUCKET_STATUS_URL", "refname": "CI_COMMIT_BRANCH", "ref": "CI_COMMIT_BRANCH",
}

func fieldHint(he *bitbucket.HTTPError) string {
	vars := he.Named(fieldVariables)
	if len(vars) == 0 {
		return "Check BITBUCKET_STATUS_KEY, BITBUCKET_STATUS_NAME, BITBUCKET_STATUS_DESCRIPTION and BITBUCKET_STATUS_URL."
	}
	return "Change " + strings.Join(vars, " and ") + "."
}

func explainTransport(te *bitbucket.TransportError, variable string, run *config.Run) string {
	host := te.URL
	if u, err := url.Parse(te.URL); err == nil {
		host = u.Host
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var dns *net.DNSError
	switch {
	case te.Interrupted:
		return fmt.Sprintf("Interrupted (the job was canceled or stopped) before %s answered; the status may not have been posted.", host)
	case errors.As(te, &unknownCA):
		return fmt.Sprintf("The certificate of %s is signed by an unknown authority.\nIf the server uses a private CA, "+
			"set SSL_CERT_FILE to a PEM file with its CA certificate (or SSL_CERT_DIR to a directory of them); "+
			"otherwise check %s: something between the runner and Bitbucket may be intercepting TLS.", host, variable)
	case errors.As(te, &hostname):
		return fmt.Sprintf("The certificate of %s is not valid for that name: %v.\nCheck %s: use the host name the certificate names.", host, hostname.Error(), variable)
	case errors.As(te, &invalid):
		return fmt.Sprintf("The certificate of %s is not valid: %v.\nCheck %s and the server's certificate.", host, invalid.Error(), variable)
	case errors.As(te, &dns) && dns.IsNotFound:
		return fmt.Sprintf("The host %s does not exist (DNS lookup failed).\nCheck %s.", host, variable)
	case te.BudgetSpent:
		last := ""
		if cause := bitbucket.RootCause(te.Err); !errors.Is(cause, context.DeadlineExceeded) && !errors.Is(cause, context.Canceled) {
			last = "; last error: " + cause.Error()
		}
		return fmt.Sprintf("No answer from %s within BITBUCKET_STATUS_TIMEOUT (%s; %d attempt%s%s).\n"+
			"Check %s and the runner's network or proxy (HTTPS_PROXY), or raise BITBUCKET_STATUS_TIMEOUT.",
			host, run.Timeout, te.Attempts, plural(te.Attempts), last, variable)
	}
	return fmt.Sprintf("Could not reach %s: %v.\nCheck %s and the runner's network or proxy (HTTPS_PROXY).", host, bitbucket.RootCause(te.Err), variable)
}

func waitTooLong(he *bitbucket.HTTPError, run *config.Run) string {
	if he.WantedWait > 0 {
		return fmt.Sprintf("Bitbucket asked to wait %s before retrying, more than is left of BITBUCKET_STATUS_TIMEOUT (%s).\n", he.WantedWait.Round(time.Second), run.Timeout)
	}
	return ""
}

func statusText(code int) string { return fmt.Sprintf("%d %s", code, http.StatusText(code)) }

func said(he *bitbucket.HTTPError) string {
	if s := he.Said(); s != "" {
		// The sentence that follows brings its own full stop.
		return ": " + strings.TrimSuffix(s, ".")
	}
	return ""
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
