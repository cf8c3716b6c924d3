package campaigns

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// checkRaw refuses what encoding/json accepts silently: a key given twice
// in one object (two parsers could then disagree about which campaign a
// message is), invalid UTF-8 (turned into U+FFFD: a target id nobody
// sent), and a rate_limit written as 0 (the same as none once decoded).
func checkRaw(data []byte, c *Campaign) FieldErrors {
	var errs FieldErrors
	if path, ok := duplicateKey(data); ok {
		errs = append(errs, fe(path, "is given twice"))
	}
	if !utf8.Valid(data) {
		named := false
		for i, t := range c.Targets {
			if strings.ContainsRune(t, utf8.RuneError) {
				errs = append(errs, fe(fmt.Sprintf("targets[%d]", i), "is not valid UTF-8"))
				named = true
			}
		}
		if !named {
			errs = append(errs, fe("", "message is not valid UTF-8"))
		}
	}
	var probe struct {
		RateLimit *float64 `json:"rate_limit"`
	}
	if json.Unmarshal(data, &probe) == nil && probe.RateLimit != nil && *probe.RateLimit == 0 {
		errs = append(errs, fe("rate_limit", "must be a positive number of calls per second (leave it out for none of its own)"))
	}
	return errs
}

// duplicateKey returns the path of the first key given twice in one JSON
// object anywhere in data (e.g. "id", "template.name").
func duplicateKey(data []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	path, dup, _ := dupIn(dec, "", 0)
	return path, dup
}

const maxJSONDepth = 64

func dupIn(dec *json.Decoder, path string, depth int) (string, bool, error) {
	if depth > maxJSONDepth {
		return "", false, fmt.Errorf("too deep")
	}
	tok, err := dec.Token()
	if err != nil {
		return "", false, err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return "", false, err
			}
			k, _ := kt.(string)
			if seen[k] {
				return path + k, true, nil
			}
			seen[k] = true
			if p, dup, err := dupIn(dec, path+k+".", depth+1); dup || err != nil {
				return p, dup, err
			}
		}
		_, err = dec.Token() // }
		return "", false, err
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if p, dup, err := dupIn(dec, fmt.Sprintf("%s[%d].", strings.TrimSuffix(path, "."), i), depth+1); dup || err != nil {
				return p, dup, err
			}
		}
		_, err = dec.Token() // ]
		return "", false, err
	}
	return "", false, nil
}
