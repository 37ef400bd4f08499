package bitbucket

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// capabilitiesTTL is how long a server's answer is kept, as Atlassian's
// Jenkins plugin keeps it: an upgrade is seen within minutes.
const capabilitiesTTL = 6 * time.Minute

// dcCapabilities is what a Data Center server says it supports.
type dcCapabilities struct {
	// known: the server answered GET /rest/capabilities.
	known bool
	// builds: it has the repository-scoped builds API (7.4+).
	builds bool
	// cancelled: its builds API takes CANCELLED (8.0+).
	cancelled bool
}

type cachedCapabilities struct {
	caps    dcCapabilities
	fetched time.Time
}

// CapabilitiesRequest reads the server's list of capabilities.
func (r DataCenter) CapabilitiesRequest() Request {
	return Request{Method: http.MethodGet, URL: joinURL(r.Server, "rest", "capabilities")}
}

// capabilities asks the server, through c (so with its retries, budget and
// credential), or remembers its last answer. GET /rest/capabilities names a
// "build" document when the builds API exists; that document lists
// "cancelledStatus" when it takes CANCELLED. A server without the resource
// (an unknown route) is not known, which is not an error.
func (r DataCenter) capabilities(ctx context.Context, c *Client) (dcCapabilities, error) {
	c.capsMu.Lock()
	cached, ok := c.caps[r.Server]
	c.capsMu.Unlock()
	if ok && time.Since(cached.fetched) < capabilitiesTTL {
		return cached.caps, nil
	}
	caps, err := r.fetchCapabilities(ctx, c)
	if err != nil {
		return dcCapabilities{}, err
	}
	c.capsMu.Lock()
	if c.caps == nil {
		c.caps = map[string]cachedCapabilities{}
	}
	c.caps[r.Server] = cachedCapabilities{caps: caps, fetched: time.Now()}
	c.capsMu.Unlock()
	return caps, nil
}

func (r DataCenter) fetchCapabilities(ctx context.Context, c *Client) (dcCapabilities, error) {
	resp, err := c.Do(ctx, r.CapabilitiesRequest())
	var he *HTTPError
	if errors.As(err, &he) && UnknownRoute(he) {
		return dcCapabilities{}, nil
	}
	if err != nil {
		return dcCapabilities{}, err
	}
	var top struct {
		Capabilities map[string]string `json:"capabilities"`
	}
	if err := json.Unmarshal(resp.Body, &top); err != nil {
		return dcCapabilities{}, nil
	}
	caps := dcCapabilities{known: true}
	link, ok := top.Capabilities["build"]
	if !ok {
		return caps, nil
	}
	caps.builds = true
	resp, err = c.Do(ctx, Request{Method: http.MethodGet, URL: r.sameServer(link)})
	if errors.As(err, &he) && UnknownRoute(he) {
		return caps, nil
	}
	if err != nil {
		return dcCapabilities{}, err
	}
	var build struct {
		BuildStatus []string `json:"buildStatus"`
	}
	if json.Unmarshal(resp.Body, &build) == nil {
		caps.cancelled = slices.Contains(build.BuildStatus, "cancelledStatus")
	}
	return caps, nil
}

// sameServer turns the absolute URL a server gives for a document into the
// same path on the server as it is configured here. The server's own base
// URL may differ from the one the runner reaches (a proxy, an internal name),
// and the credential is never sent to a host taken from an answer.
func (r DataCenter) sameServer(link string) string {
	fallback := joinURL(r.Server, "rest", "api", "latest", "build", "capabilities")
	u, err := url.Parse(link)
	if err != nil {
		return fallback
	}
	_, rest, ok := strings.Cut(u.EscapedPath(), "/rest/")
	if !ok || rest == "" {
		return fallback
	}
	return r.Server + "/rest/" + rest
}
