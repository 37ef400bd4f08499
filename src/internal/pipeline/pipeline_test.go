package pipeline

import (
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	p := Pipeline{ProjectPath: "acme/widgets", IID: "7", Branch: "main", URL: "https://gitlab.example.com/acme/widgets/-/pipelines/1234",
		State: state.Successful, CreatedAt: created, EndedAt: created.Add(90*time.Second + 500*time.Microsecond)}
	cases := []struct {
		name       string
		p          Pipeline
		dataCenter bool
		want       bitbucket.Status
	}{
		{"cloud branch", p, false, bitbucket.Status{Key: "gitlab/acme/widgets", State: state.Successful, Name: "GitLab: acme/widgets #7",
			Description: "Pipeline #7 on main passed", URL: p.URL, Branch: "main", BuildNumber: "7"}},
		{"data center has a duration", p, true, bitbucket.Status{Key: "gitlab/acme/widgets", State: state.Successful, Name: "GitLab: acme/widgets #7",
			Description: "Pipeline #7 on main passed", URL: p.URL, Branch: "main", BuildNumber: "7", Duration: 90 * time.Second}},
		{"running has none", with(p, func(p *Pipeline) { p.State = state.InProgress }), true, bitbucket.Status{Key: "gitlab/acme/widgets",
			State: state.InProgress, Name: "GitLab: acme/widgets #7", Description: "Pipeline #7 on main is running", URL: p.URL, Branch: "main", BuildNumber: "7"}},
		{"tag: no branch", with(p, func(p *Pipeline) { p.Tag = "v1.2.3"; p.State = state.Stopped }), false, bitbucket.Status{Key: "gitlab/acme/widgets",
			State: state.Stopped, Name: "GitLab: acme/widgets #7", Description: "Pipeline #7 for tag v1.2.3 was canceled or skipped", URL: p.URL, Tag: "v1.2.3", BuildNumber: "7"}},
		{"long path", with(p, func(p *Pipeline) {
			p.ProjectPath = "platform-team/infrastructure/terraform-modules"
			p.State = state.Failed
		}), false,
			bitbucket.Status{Key: "gitlab/../terraform-modules-db86cb41", State: state.Failed, Name: "GitLab: platform-team/infrastructure/terraform-modules #7",
				Description: "Pipeline #7 on main failed", URL: p.URL, Branch: "main", BuildNumber: "7"}},
	}
	// GitLab's own word says more than the state: what a blocked pipeline
	// waits for, a canceled one from a skipped one.
	words := func(word string, st state.State, manual ...string) Pipeline {
		return with(p, func(p *Pipeline) { p.State, p.Word, p.Manual = st, word, manual })
	}
	cases = append(cases, []struct {
		name       string
		p          Pipeline
		dataCenter bool
		want       bitbucket.Status
	}{
		{"blocked on manual jobs", words("manual", state.InProgress, "deploy-production", "stop-review"), false, bitbucket.Status{Key: "gitlab/acme/widgets",
			State: state.InProgress, Name: "GitLab: acme/widgets #7", Description: "Pipeline #7 on main waits for a manual action: deploy-production, stop-review",
			URL: p.URL, Branch: "main", BuildNumber: "7"}},
		{"blocked, jobs unknown", words("manual", state.InProgress), false, bitbucket.Status{Key: "gitlab/acme/widgets",
			State: state.InProgress, Name: "GitLab: acme/widgets #7", Description: "Pipeline #7 on main waits for a manual action",
			URL: p.URL, Branch: "main", BuildNumber: "7"}},
		{"a delayed job", words("scheduled", state.InProgress), false, bitbucket.Status{Key: "gitlab/acme/widgets",
			State: state.InProgress, Name: "GitLab: acme/widgets #7", Description: "Pipeline #7 on main waits for a delayed job",
			URL: p.URL, Branch: "main", BuildNumber: "7"}},
		{"skipped", words("skipped", state.Stopped), true, bitbucket.Status{Key: "gitlab/acme/widgets",
			State: state.Stopped, Name: "GitLab: acme/widgets #7", Description: "Pipeline #7 on main was skipped",
			URL: p.URL, Branch: "main", BuildNumber: "7", Duration: 90 * time.Second, Skipped: true}},
		{"canceled", words("Canceled", state.Stopped), false, bitbucket.Status{Key: "gitlab/acme/widgets",
			State: state.Stopped, Name: "GitLab: acme/widgets #7", Description: "Pipeline #7 on main was canceled",
			URL: p.URL, Branch: "main", BuildNumber: "7"}},
		{"a word that says no more than the state", words("success", state.Successful), false, bitbucket.Status{Key: "gitlab/acme/widgets",
			State: state.Successful, Name: "GitLab: acme/widgets #7", Description: "Pipeline #7 on main passed",
			URL: p.URL, Branch: "main", BuildNumber: "7"}},
	}...)
	for _, c := range cases {
		if got := Status(c.p, c.dataCenter); got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
}

func with(p Pipeline, change func(*Pipeline)) Pipeline {
	change(&p)
	return p
}
