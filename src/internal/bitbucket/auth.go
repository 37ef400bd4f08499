package bitbucket

import (
	"fmt"
	"net/http"
)

// AuthKind names how a request is authenticated; error explanations depend on it.
type AuthKind int

// The credential kinds Bitbucket accepts.
const (
	// NoAuth sends no credential (only a dry run gets this far without one).
	NoAuth AuthKind = iota
	// Basic is HTTP Basic: an API token with the Atlassian account email (Cloud),
	// or a user name with a personal token or password (Data Center).
	Basic
	// Bearer is an access token: repository, project or workspace (Cloud), or
	// an HTTP access token (Data Center).
	Bearer
	// OAuth is an OAuth consumer's client-credentials grant, then Bearer.
	OAuth
)

// Auth is the credential of a run. Its String never shows a secret.
type Auth struct {
	Kind     AuthKind
	Username string
	// Token is the API token, access token or password.
	Token string
	// ClientID, ClientSecret and TokenURL are an OAuth consumer's.
	ClientID     string
	ClientSecret string
	TokenURL     string
}

// String describes the credential without its secret, so an Auth printed by
// mistake leaks nothing.
func (a Auth) String() string { return a.describe() }

// GoString keeps %#v from printing the fields.
func (a Auth) GoString() string { return a.describe() }

func (a Auth) describe() string {
	switch a.Kind {
	case Basic:
		return fmt.Sprintf("Basic [REDACTED] (user %q)", a.Username)
	case Bearer:
		return "Bearer [REDACTED]"
	case OAuth:
		return fmt.Sprintf("Bearer [REDACTED] (an OAuth access token for client %q from %s)", a.ClientID, a.TokenURL)
	}
	return "(none: no credential is set)"
}

// apply sets the Authorization header; bearer is the OAuth access token
// already fetched, if any.
func (a Auth) apply(h http.Header, bearer string) {
	switch a.Kind {
	case Basic:
		r := http.Request{Header: h}
		r.SetBasicAuth(a.Username, a.Token)
	case Bearer:
		h.Set("Authorization", "Bearer "+a.Token)
	case OAuth:
		h.Set("Authorization", "Bearer "+bearer)
	}
}
