package easemob

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// bodyDecoder is an into (see callInto) that decodes a 200 answer's whole
// body itself.
type bodyDecoder interface {
	decodeBody(body []byte) error
}

// bodies recycles response buffers: a push/single answer is ~8 KiB, and
// io.ReadAll would grow a fresh one from 512 bytes for every call.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody is the largest buffer put back (a rare huge answer is left
// to the garbage collector rather than kept).
const maxPooledBody = 256 << 10

// readBody reads at most limit+1 bytes of r into a pooled buffer; done
// gives it back (nothing may keep the bytes after that).
func readBody(r io.Reader, size int64, limit int64) (body []byte, done func(), err error) {
	buf := bodies.Get().(*bytes.Buffer)
	buf.Reset()
	if size > 0 && size <= limit {
		buf.Grow(int(size) + bytes.MinRead)
	}
	_, err = buf.ReadFrom(io.LimitReader(r, limit+1))
	return buf.Bytes(), func() {
		if buf.Cap() <= maxPooledBody {
			bodies.Put(buf)
		}
	}, err
}

// pushResults decodes a push/single answer's data, [{id, pushStatus,
// desc}, …], into out, exactly as encoding/json decodes it into
// struct{Data []TargetResult}.
//
// push/single answers 100 results per call and is campaignd's hottest
// path, so the answer is first read in one pass without reflection
// (pushScanner). That pass takes only the plain shape providers send (no
// escapes in strings, no member named in another case, nothing deeper than
// maxScanDepth); on anything else it gives up, and encoding/json decodes
// (and judges) the body instead. A fuzz test holds the two to the same
// answers and the same refusals.
type pushResults struct {
	targets []string // the request's, in order
	out     []TargetResult
}

func (r *pushResults) decodeBody(body []byte) error {
	s := pushScanner{b: body, targets: r.targets, out: r.out[:0]}
	if s.answer() {
		r.out = s.out
		return nil
	}
	var env struct {
		Data []TargetResult `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return err
	}
	r.out = append(r.out[:0], env.Data...)
	return nil
}

// maxScanDepth is how deeply nested a value pushScanner skips; deeper ones go
// to encoding/json.
const maxScanDepth = 32

// pushScanner is one pass over a push/single answer. Its methods return
// false to give up (the body is not of the plain shape, or not JSON).
type pushScanner struct {
	b       []byte
	i       int
	targets []string
	out     []TargetResult
	// tail is what follows the id in a result with the status tailStatus
	// and the desc tailDesc (sameAsBefore).
	tail                 []byte
	tailStatus, tailDesc string
	tailBuf              [96]byte
}

// answer reads the whole body: an object whose member "data" (once) is
// null or an array of result objects, followed by nothing but space.
func (s *pushScanner) answer() bool {
	s.space()
	seenData := false
	ok := s.object(func(key []byte) bool {
		if string(key) != "data" {
			if strings.EqualFold(string(key), "data") {
				return false
			}
			return s.value(0)
		}
		if seenData {
			return false
		}
		seenData = true
		if s.literal("null") {
			return true
		}
		return s.array(func() bool { return s.result(len(s.out)) })
	})
	s.space()
	return ok && s.i == len(s.b)
}

// result reads one result object, the n-th.
func (s *pushScanner) result(n int) bool {
	if s.sameAsBefore(n) {
		return true
	}
	if !s.next('{') {
		return false
	}
	var id, st, desc []byte
	if s.next('}') {
		return s.add(n, id, st, desc)
	}
	for {
		key, ok := s.str()
		if !ok || !s.next(':') {
			return false
		}
		switch string(key) {
		case "id":
			id, ok = s.str() // a repeated member's last value wins, as in encoding/json
		case "pushStatus":
			st, ok = s.str()
		case "desc":
			desc, ok = s.str()
		default:
			ok = !strings.EqualFold(string(key), "id") && !strings.EqualFold(string(key), "pushStatus") &&
				!strings.EqualFold(string(key), "desc") && s.value(0)
		}
		if !ok {
			return false
		}
		if s.next('}') {
			return s.add(n, id, st, desc)
		}
		if !s.next(',') {
			return false
		}
	}
}

// sameAsBefore reads the n-th result when it is, byte for byte,
// {"id":"<the n-th target>","pushStatus":"<the previous status>","desc":"<the previous desc>"}
// — the usual answer, 100 times over — and appends what result would
// (the previous status and desc were read by result, so they are plain
// strings; the target is checked to be one). It reads nothing and returns
// false otherwise.
func (s *pushScanner) sameAsBefore(n int) bool {
	if n == 0 || n >= len(s.targets) {
		return false
	}
	prev, t := &s.out[n-1], s.targets[n]
	if s.tail == nil || prev.PushStatus != s.tailStatus || prev.Desc != s.tailDesc {
		if s.tail == nil {
			s.tail = s.tailBuf[:0]
		}
		s.tail = append(s.tail[:0], `","pushStatus":"`...)
		s.tail = append(s.tail, prev.PushStatus...)
		s.tail = append(s.tail, `","desc":"`...)
		s.tail = append(s.tail, prev.Desc...)
		s.tail = append(s.tail, `"}`...)
		s.tailStatus, s.tailDesc = prev.PushStatus, prev.Desc
	}
	const open = `{"id":"`
	rest := s.b[s.i:]
	size := len(open) + len(t) + len(s.tail)
	if len(rest) < size || string(rest[:len(open)]) != open ||
		string(rest[len(open):len(open)+len(t)]) != t ||
		string(rest[len(open)+len(t):size]) != string(s.tail) || !plainString(t) {
		return false
	}
	s.i += size
	s.out = append(s.out, TargetResult{ID: t, PushStatus: prev.PushStatus, Desc: prev.Desc})
	return true
}

// plainString reports whether s, between quotes, is a JSON string that
// str reads as itself: valid UTF-8 with no quote, backslash or control
// character.
func plainString(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 { // 8 bytes at a time while they are plain ASCII
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		q, bs := w^('"'*ones), w^('\\'*ones)
		special := (w | // a byte ≥ 0x80
			(w - 0x20*ones) | // a byte < 0x20 (it borrows: its high bit is set)
			((q - ones) &^ q) | // a quote
			((bs - ones) &^ bs)) & highs // a backslash
		if special != 0 {
			break
		}
	}
	ascii := true
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c < 0x20:
			return false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return ascii || utf8.ValidString(s)
}

// add appends the n-th result.
func (s *pushScanner) add(n int, id, st, desc []byte) bool {
	var prev TargetResult
	if n > 0 {
		prev = s.out[n-1]
	}
	res := TargetResult{PushStatus: reuse(st, prev.PushStatus), Desc: reuse(desc, prev.Desc)}
	if n < len(s.targets) && string(id) == s.targets[n] {
		res.ID = s.targets[n]
	} else {
		res.ID = string(id)
	}
	s.out = append(s.out, res)
	return true
}

// reuse is b as a string, prev itself when they are equal (an answer of
// 100 results repeats its statuses).
func reuse(b []byte, prev string) string {
	if string(b) == prev {
		return prev
	}
	return string(b)
}

func (s *pushScanner) space() {
	b, i := s.b, s.i
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	s.i = i
}

func (s *pushScanner) next(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c { // no space between: the usual case
		s.i++
		return true
	}
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *pushScanner) literal(lit string) bool {
	s.space()
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// object reads {"key": value, …}, calling member after each key and its
// colon to read the value.
func (s *pushScanner) object(member func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		s.space()
		key, ok := s.str()
		if !ok || !s.next(':') {
			return false
		}
		s.space()
		if !member(key) {
			return false
		}
		if s.next('}') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// array reads [elem, …].
func (s *pushScanner) array(elem func() bool) bool {
	if !s.next('[') {
		return false
	}
	if s.next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.next(']') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// str reads a string without escapes or control characters, and returns
// its bytes (valid UTF-8).
func (s *pushScanner) str() ([]byte, bool) {
	b, i := s.b, s.i
	if i >= len(b) || b[i] != '"' {
		s.space()
		if i = s.i; i >= len(b) || b[i] != '"' {
			return nil, false
		}
	}
	start := i + 1
	ascii := true
	for j := start; j < len(b); j++ {
		c := b[j]
		if c == '"' {
			v := b[start:j]
			if !ascii && !utf8.Valid(v) {
				return nil, false
			}
			s.i = j + 1
			return v, true
		}
		if c == '\\' || c < 0x20 {
			return nil, false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	return nil, false
}

// value skips any value.
func (s *pushScanner) value(depth int) bool {
	s.space()
	if s.i >= len(s.b) || depth > maxScanDepth {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{':
		return s.object(func([]byte) bool { return s.value(depth + 1) })
	case c == '[':
		return s.array(func() bool { return s.value(depth + 1) })
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.number()
	}
}

// number reads -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *pushScanner) number() bool {
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.digits() == 0:
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

func (s *pushScanner) digits() int {
	n := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}
