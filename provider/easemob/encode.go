package easemob

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// rawBody is a request body encoded already.
type rawBody []byte

// encode writes the push body as encoding/json would (same fields, same
// order, pushMessage compacted), without reflection: push/single carries
// 100 targets per call and is campaignd's hottest path.
func (b pushBody) encode() (rawBody, error) {
	out := make([]byte, 0, 64+len(b.PushMessage)+len(b.Targets)*(len(firstOr(b.Targets))+4))
	out = append(out, '{')
	if len(b.Targets) > 0 {
		out = append(out, `"targets":[`...)
		for i, t := range b.Targets {
			if i > 0 {
				out = append(out, ',')
			}
			out = appendJSONString(out, t)
		}
		out = append(out, "],"...)
	}
	if b.StartDate != "" {
		out = append(out, `"startDate":`...)
		out = appendJSONString(out, b.StartDate)
		out = append(out, ',')
	}
	if b.Strategy != nil {
		out = append(out, `"strategy":`...)
		out = strconv.AppendInt(out, int64(*b.Strategy), 10)
		out = append(out, ',')
	}
	out = append(out, `"pushMessage":`...)
	if len(b.PushMessage) == 0 {
		out = append(out, "null"...)
	} else {
		buf := bytes.NewBuffer(out)
		if err := json.Compact(buf, b.PushMessage); err != nil {
			return nil, err
		}
		out = buf.Bytes()
	}
	return append(out, '}'), nil
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD (as
// encoding/json does).
func appendJSONString(out []byte, s string) []byte {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			out = append(out, s[start:i]...)
			switch c {
			case '"', '\\':
				out = append(out, '\\', c)
			case '\n':
				out = append(out, '\\', 'n')
			case '\r':
				out = append(out, '\\', 'r')
			case '\t':
				out = append(out, '\\', 't')
			default:
				out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			out = append(out, s[start:i]...)
			out = append(out, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}

// isNonEmptyObject reports whether raw is a valid JSON object with at
// least one member.
func isNonEmptyObject(raw []byte) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	if len(t) == 0 || t[0] != '{' || !json.Valid(raw) {
		return false
	}
	t = bytes.TrimLeft(t[1:], " \t\r\n")
	return len(t) > 0 && t[0] != '}'
}
