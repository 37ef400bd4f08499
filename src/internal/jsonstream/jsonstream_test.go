package jsonstream

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestSkip: each kind of value is passed over whole, and the next token is
// the one after it.
func TestSkip(t *testing.T) {
	t.Parallel()
	d := json.NewDecoder(strings.NewReader(`[{"a":[1,{"b":[]}],"c":"x"}, "s", 3, null, [[],[[]]], "after"]`))
	if _, err := d.Token(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := Skip(d); err != nil {
			t.Fatal(err)
		}
	}
	if tok, err := d.Token(); err != nil || tok != "after" {
		t.Errorf("next token %v %v, want after", tok, err)
	}
	if err := Skip(json.NewDecoder(strings.NewReader(`{"a": [1, 2`))); err == nil {
		t.Error("a value cut short was skipped without an error")
	}
}
