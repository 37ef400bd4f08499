package app

import "regexp"

var (
	// attempts hides how many retries fitted in a budget, which depends on timing.
	attempts = regexp.MustCompile(`\(\d+ attempts?`)
	// retryLines drops the retry notices, whose waits are random.
	retryLines = regexp.MustCompile(`(?m)^bitbucket-status: POST \S+: .*; retrying in .*\n`)
)
