package bitbucket

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
)

// OAuthError is a failure to get an access token for an OAuth consumer.
type OAuthError struct {
	TokenURL string
	Err      error
}

func (e *OAuthError) Error() string {
	return "getting an OAuth access token from " + e.TokenURL + ": " + e.Err.Error()
}

func (e *OAuthError) Unwrap() error { return e.Err }

// oauthAccessToken fetches, once per Client, an access token with the
// client-credentials grant, and registers it as a secret before anyone can
// print it.
func (c *Client) oauthAccessToken(ctx context.Context) (string, error) {
	if c.Auth.Kind != OAuth {
		return "", nil
	}
	c.oauthMu.Lock()
	defer c.oauthMu.Unlock()
	if c.oauthToken != "" {
		return c.oauthToken, nil
	}
	req := Request{Method: http.MethodPost, URL: c.Auth.TokenURL, Body: []byte("grant_type=client_credentials")}
	resp, err := c.send(ctx, req, "application/x-www-form-urlencoded", func(h http.Header) {
		(&http.Request{Header: h}).SetBasicAuth(c.Auth.ClientID, c.Auth.ClientSecret)
	})
	if err != nil {
		return "", &OAuthError{TokenURL: c.Auth.TokenURL, Err: err}
	}
	var token struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(resp.Body, &token) != nil || token.AccessToken == "" {
		return "", &OAuthError{TokenURL: c.Auth.TokenURL, Err: errors.New("the answer has no access_token")}
	}
	if c.Secrets != nil {
		c.Secrets.Add(token.AccessToken)
	}
	c.oauthToken = token.AccessToken
	return token.AccessToken, nil
}
