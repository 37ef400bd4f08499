package bitbucket

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
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

// oauthToken is an OAuth access token and when to fetch the next one.
type oauthToken struct {
	value     string
	refreshAt time.Time
}

// unknownLifetime is how long a token is kept whose answer said no
// expires_in (Bitbucket Cloud's say 7200 s).
const unknownLifetime = 30 * time.Minute

// refreshMargin is how long before it expires a token is replaced: a tenth
// of its life, at most five minutes, so no request goes out with a token
// about to expire.
func refreshMargin(life time.Duration) time.Duration { return min(life/10, 5*time.Minute) }

// oauthAccessToken returns the OAuth access token to send, fetching one
// with the client-credentials grant when none is held or the one held is
// near its expiry (Cloud's last two hours: a long-running relay outlives
// many). fresh says it was fetched by this call. Each token is registered
// as a secret before anyone can print it.
func (c *Client) oauthAccessToken(ctx context.Context) (token string, fresh bool, err error) {
	if c.Auth.Kind != OAuth {
		return "", false, nil
	}
	c.oauthMu.Lock()
	defer c.oauthMu.Unlock()
	if c.oauth.value != "" && time.Now().Before(c.oauth.refreshAt) {
		return c.oauth.value, false, nil
	}
	req := Request{Method: http.MethodPost, URL: c.Auth.TokenURL, Body: []byte("grant_type=client_credentials")}
	fetched := time.Now()
	resp, err := c.send(ctx, req, "application/x-www-form-urlencoded", func(h http.Header) error {
		(&http.Request{Header: h}).SetBasicAuth(c.Auth.ClientID, c.Auth.ClientSecret)
		return nil
	})
	if err != nil {
		return "", false, &OAuthError{TokenURL: c.Auth.TokenURL, Err: err}
	}
	var answer struct {
		AccessToken string  `json:"access_token"`
		ExpiresIn   float64 `json:"expires_in"`
	}
	if json.Unmarshal(resp.Body, &answer) != nil || answer.AccessToken == "" {
		return "", false, &OAuthError{TokenURL: c.Auth.TokenURL, Err: errors.New("the answer has no access_token")}
	}
	if c.Secrets != nil {
		c.Secrets.Add(answer.AccessToken)
	}
	life := unknownLifetime
	if answer.ExpiresIn > 0 {
		life = time.Duration(answer.ExpiresIn * float64(time.Second))
	}
	c.oauth = oauthToken{value: answer.AccessToken, refreshAt: fetched.Add(life - refreshMargin(life))}
	return answer.AccessToken, true, nil
}

// forgetOAuthToken drops token if it is still the one held: the server
// refused it (revoked, or expired early), so the next call fetches another.
func (c *Client) forgetOAuthToken(token string) {
	c.oauthMu.Lock()
	defer c.oauthMu.Unlock()
	if c.oauth.value == token {
		c.oauth = oauthToken{}
	}
}
