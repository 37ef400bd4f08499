// Package jsonstream reads past JSON values in a token stream without
// holding them: what the streaming readers of large reports (GitLab's test
// report, Code Quality files) skip.
package jsonstream

import (
	"encoding/json"
	"errors"
)

// Skip reads past the next JSON value, token by token, holding none of it.
func Skip(d *json.Decoder) error {
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
		if depth < 0 {
			return errors.New("unbalanced JSON")
		}
	}
}
