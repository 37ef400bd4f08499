// Package state turns the words GitLab and Bitbucket use for a build's progress
// into the one outcome a Bitbucket build status reports.
package state

import (
	"fmt"
	"strings"
)

// State is a build status outcome, named as Bitbucket Cloud names it.
type State string

// The four outcomes Bitbucket Cloud accepts. Data Center calls Stopped CANCELLED.
const (
	InProgress State = "INPROGRESS"
	Successful State = "SUCCESSFUL"
	Failed     State = "FAILED"
	Stopped    State = "STOPPED"
)

// words maps every accepted word, lower case, to its outcome. GitLab's job and
// pipeline statuses are here so a job can pass $CI_JOB_STATUS straight through.
var words = map[string]State{
	"running": InProgress, "pending": InProgress, "created": InProgress, "manual": InProgress,
	"scheduled": InProgress, "waiting_for_resource": InProgress, "preparing": InProgress,
	"waiting_for_callback": InProgress, "inprogress": InProgress,
	"passed": Successful, "success": Successful, "successful": Successful,
	"failed": Failed, "failure": Failed,
	"canceled": Stopped, "canceling": Stopped, "cancelled": Stopped, "stopped": Stopped, "skipped": Stopped,
}

// Accepted lists the accepted words in the order the help and errors show them.
const Accepted = "running, pending, created, manual, scheduled, waiting_for_resource, preparing, waiting_for_callback, inprogress " +
	"(INPROGRESS); passed, success, successful (SUCCESSFUL); failed, failure (FAILED); " +
	"canceled, canceling, cancelled, stopped, skipped (STOPPED)"

// Parse returns the outcome a word names, in any letter case.
func Parse(word string) (State, error) {
	if s, ok := words[strings.ToLower(strings.TrimSpace(word))]; ok {
		return s, nil
	}
	shown := word
	if len(shown) > 40 {
		shown = shown[:40] + "..."
	}
	return "", fmt.Errorf("unknown state %q: use one of %s", shown, Accepted)
}

// Final reports whether the outcome ends the pipeline's report.
func (s State) Final() bool { return s != InProgress }
