package relay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
)

// TestAdviceNamesTheRelaysSettings: a refusal is explained in the relay's
// terms: the route, the credential by its name in the routes file and
// where its token comes from, the setting to change there; never the job
// binary's variables, which the relay does not read.
func TestAdviceNamesTheRelaysSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes.yml")
	if err := os.WriteFile(routes, []byte(`
credentials:
  platform:
    token_env: PLATFORM_TOKEN
    username: ci-bot
routes:
  - project: acme/*
    cloud: acme/{1}
    credential: platform
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := startRelay(t, map[string]string{"BITBUCKET_RELAY_ROUTES": routes, "PLATFORM_TOKEN": "platform-token-0123456789"}, nil, nil)
	routed := Destination{Cloud: &bitbucket.Cloud{API: bitbucket.DefaultCloudAPI, Workspace: "acme", Slug: "widgets"}, Credential: "platform",
		Via: "route 1 (acme/*)"}
	byDefault := Destination{Cloud: &bitbucket.Cloud{API: bitbucket.DefaultCloudAPI, Workspace: "shop", Slug: "cart"}, Credential: DefaultCredential,
		Via: "the default route (group/project)"}
	mirrored := byDefault
	mirrored.Via = mirrorVia
	refusal := func(code int, msg string, fields map[string]string) error {
		return &bitbucket.HTTPError{Method: "POST", URL: "https://api.bitbucket.org/2.0/x", StatusCode: code, Message: msg, Fields: fields}
	}
	const commit = "0123456789abcdef0123456789abcdef01234567"
	for _, c := range []struct {
		name string
		d    Destination
		err  error
		want string
	}{
		{"401, a route's credential sent as Basic with a user name that is no email", routed, refusal(401, "", nil),
			"Bitbucket rejected credential \"platform\" of the routes file (its token from PLATFORM_TOKEN) (401 Unauthorized).\n" +
				"It was sent as HTTP Basic as \"ci-bot\", which is not an email address: a Bitbucket Cloud API token needs the Atlassian " +
				"account's email: set its username: in the routes file (credential \"platform\") to it. For a repository, project or workspace " +
				"access token, remove its username: in the routes file (credential \"platform\"), so it is sent as Bearer. " + appPasswordsGone},
		{"401, the default credential as Bearer", byDefault, refusal(401, "", nil),
			"Bitbucket rejected the credential in BITBUCKET_ACCESS_TOKEN (401 Unauthorized).\nIt was sent as a Bearer token, right for a " +
				"repository, project or workspace access token: check that it has access to bitbucket.org/shop/cart and is not revoked or expired. " +
				"For an API token, set BITBUCKET_USERNAME to the Atlassian account's email. " + appPasswordsGone},
		{"403 through a route", routed, refusal(403, "Forbidden", nil),
			"Bitbucket refused the request (403 Forbidden): Forbidden.\nCredential \"platform\" of the routes file (its token from PLATFORM_TOKEN) " +
				"works but may not do this on bitbucket.org/acme/widgets: it may lack the scope: an access token needs the repository scope " +
				"(Repositories: Read), an API token read:repository:bitbucket.\nOr the status key \"gitlab/acme/widgets\" was first posted by " +
				"another identity (the component's jobs with another token, or a credential used before): only the account that created a " +
				"status (or a repository admin) may overwrite it. Post with that credential again, or give route 1 (acme/*) a key of its own: " +
				"set key: on the route in the routes file (BITBUCKET_RELAY_ROUTES), e.g. key: gitlab/{path}/relay."},
		{"404 through a route", routed, refusal(404, "Repository acme/widgets not found", nil),
			"Bitbucket found no repository bitbucket.org/acme/widgets or no commit " + commit + " in it (404 Not Found): Repository " +
				"acme/widgets not found.\nThe repository came from route 1 (acme/*): check the route's cloud: (workspace/slug) in the routes " +
				"file (BITBUCKET_RELAY_ROUTES).\nIf it is right: the commit may not be on Bitbucket yet (a mirror that lags), or credential " +
				"\"platform\" of the routes file (its token from PLATFORM_TOKEN) cannot see this private repository."},
		{"404 by default", byDefault, refusal(404, "", nil),
			"Bitbucket found no repository bitbucket.org/shop/cart or no commit " + commit + " in it (404 Not Found).\nThe repository came from " +
				"the default route (group/project): the GitLab project's group and name; if the Bitbucket workspace or repository is named " +
				"otherwise, add a route for the project to the routes file (BITBUCKET_RELAY_ROUTES).\nIf it is right: the commit may not be on " +
				"Bitbucket yet (a mirror that lags), or the credential in BITBUCKET_ACCESS_TOKEN cannot see this private repository."},
		{"404 through a mirror", mirrored, refusal(404, "", nil),
			"Bitbucket found no repository bitbucket.org/shop/cart or no commit " + commit + " in it (404 Not Found).\nThe repository came from " +
				"the project's pull mirror: the project's pull mirror in GitLab (Settings > Repository > Mirroring repositories) names it; if the " +
				"mirror is right, add a route for the project to the routes file.\nIf it is right: the commit may not be on Bitbucket yet (a " +
				"mirror that lags), or the credential in BITBUCKET_ACCESS_TOKEN cannot see this private repository."},
		{"400 on the key", routed, refusal(400, "key: Ensure this value has at most 40 characters", map[string]string{"key": "Ensure this value has at most 40 characters"}),
			"Bitbucket rejected the status (400 Bad Request): key: Ensure this value has at most 40 characters — fields: key: Ensure this " +
				"value has at most 40 characters.\nCheck the key (set key: on the route in the routes file (BITBUCKET_RELAY_ROUTES), e.g. key: " +
				"gitlab/{path}/relay)."},
	} {
		got := tr.advice(c.err, c.d, "gitlab/acme/widgets", commit, true)
		if got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
		for _, jobs := range []string{"BITBUCKET_STATUS_KEY", "BITBUCKET_NAMESPACE", "BITBUCKET_REPOSITORY", "BITBUCKET_REPO_URL"} {
			if strings.Contains(got, jobs) {
				t.Errorf("%s: names the job binary's %s, which the relay does not read", c.name, jobs)
			}
		}
	}
}
