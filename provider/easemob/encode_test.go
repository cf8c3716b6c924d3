package easemob

import (
	"encoding/json"
	"reflect"
	"testing"
)

// sameAsEncodingJSON fails t unless b.encode() reads back as the same JSON
// value as encoding/json's encoding of b.
func sameAsEncodingJSON(t *testing.T, b pushBody) {
	t.Helper()
	got, err := b.encode()
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("encode %q: %v", got, err)
	}
	_ = json.Unmarshal(want, &w)
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("encode:\n %q\nencoding/json:\n %q", got, want)
	}
}

func TestPushBodyEncodeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	two := 2
	for _, b := range []pushBody{
		{Targets: []string{"u1", "u2"}, PushMessage: json.RawMessage(`{"title":"t", "content":"c"}`)},
		{Targets: []string{`q"uo\te`, "tab\there", "nl\n", "ctl\x01\x1f", "émoji😀", "bad\xffutf8", "<html>&"}, Strategy: &two,
			PushMessage: json.RawMessage(" {\n \"title\" : \"x\" } ")},
		{StartDate: "2026-12-01 09:00:00", PushMessage: json.RawMessage(`{"a":[1,2,{"b":null}]}`)},
		{PushMessage: nil},
	} {
		sameAsEncodingJSON(t, b)
	}
}

func FuzzPushBodyEncode(f *testing.F) {
	f.Add("u1", "u\"2\\", 3, `{"title":"t"}`)
	f.Add("\x00\x7f\u2028", "\xff\xfe", -1, ` { "x" : [ ] } `)
	f.Fuzz(func(t *testing.T, a, b string, strategy int, msg string) {
		if !json.Valid([]byte(msg)) {
			return
		}
		sameAsEncodingJSON(t, pushBody{Targets: []string{a, b}, Strategy: &strategy, PushMessage: json.RawMessage(msg)})
	})
}

func TestIsNonEmptyObject(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]bool{
		`{"title":"t"}`:   true,
		" \n{ \"a\":1 } ": true,
		`{}`:              false,
		` { } `:           false,
		`[]`:              false,
		`"x"`:             false,
		``:                false,
		`{"a":`:           false,
		`{"a":1}x`:        false,
		`null`:            false,
	} {
		if got := isNonEmptyObject([]byte(raw)); got != want {
			t.Errorf("isNonEmptyObject(%q) = %v, want %v", raw, got, want)
		}
	}
}
