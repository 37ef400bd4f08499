package relaystatus

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"text/tabwriter"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

//go:embed page.html style.css
var files embed.FS

// Style is the page's only stylesheet, served by the relay itself.
var Style, _ = files.ReadFile("style.css")

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"ago":      ago,
	"entry":    entryText,
	"clock":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"short":    func(s string) string { return s[:min(len(s), 12)] },
	"cut":      cut,
	"count":    Result.count,
	"pipeline": PipelineName,
	"add":      func(a, b int) int { return a + b },
	"first":    func(n int, e []Entry) []Entry { return e[:min(n, len(e))] },
}).ParseFS(files, "page.html"))

// Page is what the page template shows: the overview, and a search's
// query, with its result or why it was refused.
type Page struct {
	Overview Overview
	Plot     Plot
	Query    string
	Search   *Result
	Error    string
	// Entries and ErrorChars are how much of each status's history and
	// last error the page shows: all of it for a few statuses, less the
	// more there are, so that a page stays under 60 KB (text and JSON show
	// everything).
	Entries, ErrorChars int
}

// WriteHTML writes the page. html/template escapes everything that came
// from a webhook or from Bitbucket as text. The search box keeps the
// query, whether it was answered or refused.
func WriteHTML(w io.Writer, o Overview, query string, search *Result, searchErr error) error {
	p := Page{Overview: o, Plot: plotOf(o.Minutes), Query: query, Search: search, Entries: store.HistoryKept, ErrorChars: 2000}
	if searchErr != nil {
		p.Error = searchErr.Error()
	}
	if search != nil {
		switch n := len(search.Statuses); {
		case search.Kind == "project" || n > 12:
			p.Entries, p.ErrorChars = projectHistory, 240
		case n > 5:
			p.Entries, p.ErrorChars = 6, 400
		}
	}
	return page.Execute(w, p)
}

// WriteJSON writes v, indented.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteText writes the overview as plain text, for a terminal.
func (o Overview) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Backlog:\t%d pending", o.Pending)
	if !o.OldestPending.IsZero() {
		fmt.Fprintf(tw, ", the oldest accepted %s", ago(o.Now, o.OldestPending))
	}
	fmt.Fprintln(tw)
	if s := o.LastSweep; s != nil {
		fmt.Fprintf(tw, "Last sweep:\t%s by %s: %d projects, %d statuses queued, %d read back from Bitbucket, %d posted again\n",
			ago(o.Now, s.At), s.Replica, s.Projects, s.Queued, s.Verified, s.Reposted)
	} else {
		fmt.Fprintln(tw, "Last sweep:\tnone (the sweep needs GITLAB_TOKEN)")
	}
	fmt.Fprintln(tw, "\nBitbucket servers, last hour:")
	if len(o.Servers) == 0 {
		fmt.Fprintln(tw, "  none posted to yet")
	}
	for _, s := range o.Servers {
		fmt.Fprintf(tw, "  %s\t%d posts\t%d failed\n", s.Server, s.Posts, s.Failures)
		if f := s.LastFailure; f != nil {
			fmt.Fprintf(tw, "    last failure %s (%s): %s\n", ago(o.Now, f.At), codeText(f.Code), f.Detail)
		}
	}
	if l := o.Local; l != nil {
		fmt.Fprintf(tw, "\nThis replica (%s):\n", l.Replica)
		for _, s := range l.Servers {
			state := "closed"
			if s.BreakerOpen {
				state = "open until " + s.OpenUntil.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "  %s\t%d in flight\tbreaker %s\n", s.Server, s.InFlight, state)
		}
		for _, p := range l.Pauses {
			fmt.Fprintf(tw, "  credential %q paused by a 429 until %s\n", p.Credential, p.Until.UTC().Format(time.RFC3339))
		}
	}
	return tw.Flush()
}

// WriteText writes a search's result as plain text.
func (r Result) WriteText(w io.Writer, now time.Time) error {
	if r.Total == 0 {
		fmt.Fprintf(w, "No status for %s %s: ", r.Kind, r.Value)
		switch {
		case len(r.Skipped) == 0 && len(r.Pushes) > 0:
			fmt.Fprintln(w, "no pipeline of it reached the relay yet; its push did (below).")
		case len(r.Skipped) == 0:
			_, err := fmt.Fprintln(w, "the relay received nothing for it that it reports, or the status was pruned "+
				"(its log says why a pipeline is not reported: \"pipeline not reported\").")
			return err
		default:
			fmt.Fprintln(w, "every pipeline received for it was not reported, for the reasons below.")
		}
	} else {
		fmt.Fprintf(w, "%s status(es) for %s %s", r.count(), r.Kind, r.Value)
		if r.Pages > 1 {
			fmt.Fprintf(w, ", page %d of %d (--page N)", r.Page, r.Pages)
		}
		fmt.Fprintln(w)
	}
	for _, s := range r.Statuses {
		fmt.Fprintf(w, "\n%s on %s, commit %s, key %q (project %s, credential %q)\n", s.Repository, s.Server, s.Commit, s.Key, s.Project, s.Credential)
		fmt.Fprintf(w, "  shows: %s\n", shows(s))
		if s.Description != "" {
			fmt.Fprintf(w, "  says:  %s (%s in GitLab)\n", s.Description, s.GitLabStatus)
		}
		fmt.Fprintf(w, "  waits: %s\n", s.Waiting)
		if s.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", s.LastError)
		}
		for _, e := range s.History {
			fmt.Fprintf(w, "  %s  %s\n", e.At.UTC().Format("2006-01-02 15:04:05"), entryText(e))
		}
	}
	if len(r.Pushes) > 0 {
		fmt.Fprintln(w, "\nFrom push to pipeline:")
		for i := len(r.Pushes) - 1; i >= 0; i-- {
			e := r.Pushes[i]
			fmt.Fprintf(w, "  %s  %s (%s): %s\n", e.At.UTC().Format("2006-01-02 15:04:05"), e.What(), e.Project, e.Detail)
		}
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintln(w, "\nReceived and not reported:")
		for _, sk := range r.Skipped {
			fmt.Fprintf(w, "  %s  %s pipeline %s (%s), %d event(s): %s: %s\n", sk.At.UTC().Format("2006-01-02 15:04:05"), sk.Project,
				PipelineName(sk.Pipeline, sk.PipelineIID), sk.Source, sk.Events, sk.Reason, sk.Detail)
		}
	}
	return nil
}

// count is how many statuses matched, as far as counted.
func (r Result) count() string {
	if r.Total >= store.FindCountLimit {
		return fmt.Sprintf("%d or more", store.FindCountLimit)
	}
	return fmt.Sprint(r.Total)
}

func shows(s Status) string {
	if s.PostedPipeline == 0 {
		return "nothing posted yet"
	}
	iid := int64(0)
	if s.PostedPipeline == s.Pipeline {
		iid = s.PipelineIID
	}
	return fmt.Sprintf("%s for pipeline %s (as last posted)", s.PostedState, PipelineName(s.PostedPipeline, iid))
}

// entryText is one history entry on one line.
func entryText(e Entry) string {
	name := PipelineName(e.Pipeline, e.PipelineIID)
	if e.Kind == "event" {
		return fmt.Sprintf("event  pipeline %s %s (%s): %s", name, e.State, e.Source, e.Detail)
	}
	if e.Kind == "report" {
		return fmt.Sprintf("report pipeline %s %s: %s: %s", name, e.State, codeText(e.Code), e.Detail)
	}
	text := fmt.Sprintf("post   pipeline %s %s: %s", name, e.State, codeText(e.Code))
	if e.Detail != "" {
		text += ": " + e.Detail
	}
	return text
}

func codeText(code int) string {
	if code == 0 {
		return "no answer"
	}
	return fmt.Sprint(code)
}

// cut keeps the first n characters of s, marking what it left out.
func cut(n int, s string) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// ago says how long before now t was, coarsely.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case t.IsZero():
		return "never"
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h ago", d.Hours())
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

// Plot is the last hour's posts and failures as SVG shapes, drawn on the
// server: numbers only, no script.
type Plot struct {
	Width, Height int
	Bars          []Bar
	Max           int
}

// Bar is one minute: posts (all), failures (their share, drawn over them).
type Bar struct {
	X, Width              int
	PostsY, PostsHeight   int
	FailedY, FailedHeight int
	Title                 string
}

func plotOf(points []Point) Plot {
	p := Plot{Width: 600, Height: 120}
	for _, pt := range points {
		p.Max = max(p.Max, pt.Posts)
	}
	scale := func(n int) int {
		if p.Max == 0 {
			return 0
		}
		return n * (p.Height - 10) / p.Max
	}
	w := p.Width / max(len(points), 1)
	for i, pt := range points {
		ph, fh := scale(pt.Posts), scale(pt.Failures)
		p.Bars = append(p.Bars, Bar{X: i * w, Width: max(w-1, 1), PostsY: p.Height - ph, PostsHeight: ph, FailedY: p.Height - fh,
			FailedHeight: fh, Title: fmt.Sprintf("%s: %d posts, %d failed", pt.At.UTC().Format("15:04"), pt.Posts, pt.Failures)})
	}
	return p
}
