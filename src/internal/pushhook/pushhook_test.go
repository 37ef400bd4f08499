package pushhook

import (
	"fmt"
	"os"
	"testing"
)

func TestParseBothServers(t *testing.T) {
	t.Parallel()
	for file, c := range map[string]struct {
		key, want string
	}{
		"cloud-repo-push.json": {CloudPush, "bitbucket.org/acme/webapp [{refs/heads/main 9fec847784abb10b2fa567ee63b85bd238955d0e} " +
			"{refs/tags/v1.4.0 9fec847784abb10b2fa567ee63b85bd238955d0e}] deleted 1"},
		"dc-repo-refs-changed.json": {DataCenterPush, "SHOP/webapp at https://git.example.com/bitbucket " +
			"[{refs/heads/main 9fec847784abb10b2fa567ee63b85bd238955d0e}] deleted 1"},
	} {
		body, err := os.ReadFile("testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(c.key, body)
		if got := fmt.Sprintf("%s %v deleted %d", p.Where(), p.Refs, p.Deleted); err != nil || got != c.want {
			t.Errorf("%s: %s, %v\nwant %s", file, got, err, c.want)
		}
		if p.Refs[0].Branch() != "main" {
			t.Errorf("%s: branch %q", file, p.Refs[0].Branch())
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ key, body, want string }{
		{"pr:opened", `{}`, `X-Event-Key "pr:opened" is not a push (repo:push or repo:refs_changed)`},
		{CloudPush, `[]`, "not a JSON repo:push payload: json: cannot unmarshal array into Go value of type pushhook.cloudPayload"},
		{CloudPush, `{"push":{"changes":[]},"repository":{"full_name":"webapp"}}`, `repository.full_name is "webapp", not workspace/repository`},
		{CloudPush, `{"push":{"changes":[{"new":{"type":"branch","name":"main","target":{"hash":"zz"}}}]},"repository":{"full_name":"a/b"}}`,
			`the commit of refs/heads/main is "zz", not a commit hash`},
		{DataCenterPush, `{"repository":{"slug":"x"}}`, "no repository with a project key and a slug: not a repo:refs_changed payload"},
	} {
		if _, err := Parse(c.key, []byte(c.body)); err == nil || err.Error() != c.want {
			t.Errorf("%s %s: %v\nwant %s", c.key, c.body, err, c.want)
		}
	}
}

// TestVerify: the signature is HMAC-SHA256 of the exact body, as
// "sha256=<hex>"; anything else is refused with what is wrong.
func TestVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"push":{}}`)
	const secret = "push-secret-0123456789"
	good := Sign(secret, body)
	// The vector computed independently: printf '%s' '{"push":{}}' | openssl dgst -sha256 -hmac push-secret-0123456789
	if good != "sha256=4acae79ade2a41bcebd780bbbcbf5053bde35495524432613c90161f61a2782a" {
		t.Fatalf("sign %s", good)
	}
	if err := Verify(secret, body, good); err != nil {
		t.Errorf("a good signature: %v", err)
	}
	for header, want := range map[string]string{
		"":                           "no X-Hub-Signature: give the Bitbucket webhook a secret, the value of BITBUCKET_RELAY_PUSH_SECRET",
		"sha1=abc":                   "X-Hub-Signature is not sha256=<hex>",
		"sha256=zz":                  "X-Hub-Signature is not sha256=<hex>",
		Sign("another secret", body): "wrong X-Hub-Signature: the webhook's secret is not BITBUCKET_RELAY_PUSH_SECRET",
	} {
		if err := Verify(secret, body, header); err == nil || err.Error() != want {
			t.Errorf("%q: %v", header, err)
		}
	}
	if err := Verify(secret, append(body, ' '), good); err == nil {
		t.Error("a body changed by one byte passed")
	}
}
