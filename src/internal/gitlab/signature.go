package gitlab

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureTolerance is how far webhook-timestamp may be from now: the
// Standard Webhooks libraries' window, which stops a captured delivery from
// being replayed later.
const SignatureTolerance = 5 * time.Minute

// SigningKey is a GitLab signing token (whsec_ + base64 of the key),
// decoded once.
type SigningKey []byte

// ParseSigningKey decodes "whsec_<base64>" (the prefix is optional).
func ParseSigningKey(token string) (SigningKey, error) {
	raw := strings.TrimPrefix(strings.TrimSpace(token), "whsec_")
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return nil, errors.New("not a signing token: expected whsec_ followed by base64, as GitLab shows it")
	}
	return key, nil
}

// Sign is the Standard Webhooks signature of one delivery: "v1," and the
// base64 HMAC-SHA256 of "{id}.{timestamp}.{body}".
func (k SigningKey) Sign(id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, k)
	fmt.Fprintf(mac, "%s.%d.", id, timestamp)
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// CheckHeaders checks what the headers alone can tell: all three present
// and a timestamp within SignatureTolerance of now. It lets a request be
// refused before its body is read; it returns the timestamp.
func CheckHeaders(id, timestamp, signatures string, now time.Time) (int64, error) {
	if id == "" || timestamp == "" || signatures == "" {
		return 0, errors.New("webhook-id, webhook-timestamp or webhook-signature is missing")
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return 0, errors.New("webhook-timestamp is not a Unix time")
	}
	switch age := now.Sub(time.Unix(ts, 0)); {
	case age > SignatureTolerance:
		return 0, fmt.Errorf("webhook-timestamp is %s old, more than %s: a replay, or a clock off", age.Truncate(time.Second), SignatureTolerance)
	case age < -SignatureTolerance:
		return 0, fmt.Errorf("webhook-timestamp is %s in the future, more than %s: a clock off", (-age).Truncate(time.Second), SignatureTolerance)
	}
	return ts, nil
}

// Verify checks the webhook-id, webhook-timestamp and webhook-signature
// headers of a delivery. The signature header may list several
// space-separated signatures; one valid v1 signature is enough.
func (k SigningKey) Verify(id, timestamp, signatures string, body []byte, now time.Time) error {
	ts, err := CheckHeaders(id, timestamp, signatures, now)
	if err != nil {
		return err
	}
	want := []byte(k.Sign(id, ts, body))
	for _, sig := range strings.Fields(signatures) {
		if subtle.ConstantTimeCompare([]byte(sig), want) == 1 {
			return nil
		}
	}
	return errors.New("no valid signature: the signing token differs, or the body was changed")
}
