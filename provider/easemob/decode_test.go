package easemob

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"unicode/utf8"
	"unsafe"
)

// viaEncodingJSON decodes a push/single answer the reflective way: what
// pushResults must agree with.
func viaEncodingJSON(body []byte) ([]TargetResult, error) {
	var env struct {
		Data []TargetResult `json:"data"`
	}
	err := json.Unmarshal(body, &env)
	return env.Data, err
}

func decodePush(t testing.TB, targets []string, body string) ([]TargetResult, error) {
	t.Helper()
	r := pushResults{targets: targets}
	err := r.decodeBody([]byte(body))
	return r.out, err
}

// testTargets are the request's targets in the decoding tests: answers in
// their order are read by sameAsBefore, and those that are not plain
// strings must not be.
var testTargets = []string{"u1", "u2", "u3", `u"4`, `u\5`, "é6", "u\x017", "u\xff8"}

// decodesAsEncodingJSON fails t unless pushResults decodes body to what
// encoding/json does, and refuses it when encoding/json does.
func decodesAsEncodingJSON(t *testing.T, body string) {
	t.Helper()
	got, err := decodePush(t, testTargets, body)
	want, jerr := viaEncodingJSON([]byte(body))
	if (err != nil) != (jerr != nil) {
		t.Fatalf("%q: error %v, encoding/json's %v", body, err, jerr)
	}
	if err == nil && (len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want))) {
		t.Fatalf("%q: decoded %+v, encoding/json %+v", body, got, want)
	}
}

func TestPushResultsMatchEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		scanned    bool // read by the one-pass scanner, not encoding/json
	}{
		{"in order", `{"timestamp":1,"data":[{"id":"u1","pushStatus":"ASYNC_SUCCESS","desc":"async success."},{"id":"u2","pushStatus":"FAIL","desc":"appUser not exists"}]}`, true},
		{"out of order", `{"data":[{"id":"u2","pushStatus":"SUCCESS"},{"id":"u1","pushStatus":"SUCCESS"}]}`, true},
		{"fewer results", `{"data":[{"id":"u1","pushStatus":"SUCCESS","desc":""}]}`, true},
		{"unknown id", `{"data":[{"id":"zz","pushStatus":"FAIL"},{"id":"u2","pushStatus":"FAIL"}]}`, true},
		{"utf-8 escaped", `{"data":[{"id":"用户","pushStatus":"FAIL","desc":"l\u00e9 😀"}]}`, false},
		{"utf-8 unescaped", `{"data":[{"id":"用户","pushStatus":"FAIL","desc":"lé 😀"}]}`, true},
		{"escapes", `{"data":[{"id":"u\u0031","pushStatus":"FA\"IL","desc":"l\u00e9\n\ud83d\ude00"}]}`, false},
		{"nested and extra members", `{"uri":"x","data":[{"pushStatus":"SUCCESS","id":"u1","data":{"code":200,"data":{"failTokens":[],"ok":true,"no":false,"n":null}},"n":-1.5e+3}],"cursor":"c"}`, true},
		{"repeated member", `{"data":[{"id":"u1","id":"u2","pushStatus":"FAIL"}]}`, true},
		{"null members", `{"data":[{"id":null,"pushStatus":null,"desc":null}]}`, false},
		{"member in another case", `{"data":[{"ID":"u1","pushstatus":"FAIL","DESC":"d"}]}`, false},
		{"data in another case", `{"Data":[{"id":"u1"}]}`, false},
		{"null result", `{"data":[null,{"id":"u2"}]}`, false},
		{"no data", `{"timestamp":1}`, true},
		{"null data", `{"data":null}`, true},
		{"empty data", `{"data":[]}`, true},
		{"empty result", `{"data":[{}]}`, true},
		{"null answer", `null`, false},
		{"repeated results", `{"data":[{"id":"u1","pushStatus":"ASYNC_SUCCESS","desc":"async success."},{"id":"u2","pushStatus":"ASYNC_SUCCESS","desc":"async success."},{"id":"u3","pushStatus":"ASYNC_SUCCESS","desc":"async success."}]}`, true},
		{"repeated, then another id", `{"data":[{"id":"u1","pushStatus":"S","desc":"d"},{"id":"u2","pushStatus":"S","desc":"d"},{"id":"zz","pushStatus":"S","desc":"d"}]}`, true},
		{"repeated, then another status", `{"data":[{"id":"u1","pushStatus":"S","desc":"d"},{"id":"u2","pushStatus":"S","desc":"d"},{"id":"u3","pushStatus":"T","desc":"d"}]}`, true},
		{"repeated, a longer desc", `{"data":[{"id":"u1","pushStatus":"S","desc":"d"},{"id":"u2","pushStatus":"S","desc":"dd"}]}`, true},
		{"repeated, no desc", `{"data":[{"id":"u1","pushStatus":"S"},{"id":"u2","pushStatus":"S","desc":""}]}`, true},
		{"repeated, utf-8 target", `{"data":[{"id":"u1","pushStatus":"S","desc":"d"},{"id":"u2","pushStatus":"S","desc":"d"},{"id":"u3","pushStatus":"S","desc":"d"},{"id":"u\"4","pushStatus":"S","desc":"d"},{"id":"u\\5","pushStatus":"S","desc":"d"},{"id":"é6","pushStatus":"S","desc":"d"}]}`, false},
		{"repeated, a utf-8 target", `{"data":[{"id":"u1","pushStatus":"S","desc":"d"},{"id":"u2","pushStatus":"S","desc":"d"},{"id":"u3","pushStatus":"S","desc":"d"},{"id":"a","pushStatus":"S","desc":"d"},{"id":"b","pushStatus":"S","desc":"d"},{"id":"é6","pushStatus":"S","desc":"d"}]}`, true},
		{"a raw quote in a target", `{"data":[{"id":"u1","pushStatus":"S","desc":"d"},{"id":"u2","pushStatus":"S","desc":"d"},{"id":"u3","pushStatus":"S","desc":"d"},{"id":"u"4","pushStatus":"S","desc":"d"}]}`, false},
		{"a raw backslash in a target", `{"data":[{"id":"u1","pushStatus":"S","desc":"d"},{"id":"u2","pushStatus":"S","desc":"d"},{"id":"u3","pushStatus":"S","desc":"d"},{"id":"u","pushStatus":"S","desc":"d"},{"id":"u\5","pushStatus":"S","desc":"d"}]}`, false},
		{"a raw control character in a target", "{\"data\":[{\"id\":\"u1\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"u2\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"u3\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"a\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"b\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"é6\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"u\x017\",\"pushStatus\":\"S\",\"desc\":\"d\"}]}", false},
		{"raw invalid utf-8 in a target", "{\"data\":[{\"id\":\"u1\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"u2\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"u3\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"a\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"b\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"é6\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"c\",\"pushStatus\":\"S\",\"desc\":\"d\"},{\"id\":\"u\xff8\",\"pushStatus\":\"S\",\"desc\":\"d\"}]}", false},
		{"whitespace", " {\n \"data\" : [ { \"id\" : \"u1\" , \"pushStatus\" : \"SUCCESS\" } ] }\n", true},
		// refused, by both
		{"cut short", `{"data":[{"id":"u1"`, false},
		{"not json", `not json`, false},
		{"data an object", `{"data":{"id":"u1"}}`, false},
		{"result an array", `{"data":[["u1"]]}`, false},
		{"id a number", `{"data":[{"id":1,"pushStatus":"x"}]}`, false},
		{"status a bool", `{"data":[{"id":"u1","pushStatus":true}]}`, false},
		{"desc an object", `{"data":[{"id":"u1","desc":{}}]}`, false},
		{"trailing data", `{"data":[{"id":"u1"}]} x`, false},
		{"bad number", `{"n":01,"data":[]}`, false},
		{"control character", "{\"data\":[{\"id\":\"u\x01\"}]}", false},
		{"invalid utf-8", "{\"data\":[{\"id\":\"u\xff\"}]}", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decodesAsEncodingJSON(t, tc.body)
			s := pushScanner{b: []byte(tc.body)}
			if got := s.answer(); got != tc.scanned {
				t.Errorf("scanned: %v, want %v", got, tc.scanned)
			}
		})
	}
}

// The decoded strings must not point into the body (its buffer is reused
// by the next call); ids equal to the request's share the request's.
func TestPushResultsOwnTheirStrings(t *testing.T) {
	t.Parallel()
	targets := []string{"u1", "u2"}
	body := []byte(`{"data":[{"id":"u1","pushStatus":"SUCCESS","desc":"ok"},{"id":"x9","pushStatus":"SUCCESS","desc":"ok"}]}`)
	r := pushResults{targets: targets}
	if err := r.decodeBody(body); err != nil {
		t.Fatal(err)
	}
	if unsafe.StringData(r.out[0].ID) != unsafe.StringData(targets[0]) {
		t.Error("an id equal to the request's target was copied")
	}
	if unsafe.StringData(r.out[1].PushStatus) != unsafe.StringData(r.out[0].PushStatus) {
		t.Error("a repeated status was copied again")
	}
	for i := range body {
		body[i] = 'X'
	}
	want := []TargetResult{{ID: "u1", PushStatus: "SUCCESS", Desc: "ok"}, {ID: "x9", PushStatus: "SUCCESS", Desc: "ok"}}
	if !reflect.DeepEqual(r.out, want) {
		t.Fatalf("after the body was overwritten: %+v", r.out)
	}
}

func FuzzPushResults(f *testing.F) {
	f.Add(`{"data":[{"id":"u1","pushStatus":"SUCCESS","desc":"d"}]}`)
	f.Add(`{"data":[{"id":"\u0000","pushStatus":"","x":[1,{"y":null}]},{}]}`)
	f.Add(`{"t":-0.5E-7,"data":[{"id":"u2","z":[true,false,"s",{}]}],"e":[]}`)
	f.Add(`{"data":[{"id":"u1","pushStatus":"S","desc":"d"},{"id":"u2","pushStatus":"S","desc":"d"},{"id":"u3","pushStatus":"S","desc":"d"},{"id":"a","pushStatus":"S","desc":"d"},{"id":"b","pushStatus":"S","desc":"d"},{"id":"é6","pushStatus":"S","desc":"d"}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		decodesAsEncodingJSON(t, body)
	})
}

func TestPlainString(t *testing.T) {
	t.Parallel()
	plain := func(s string) bool { // the definition, a byte at a time
		for i := 0; i < len(s); i++ {
			if c := s[i]; c == '"' || c == '\\' || c < 0x20 {
				return false
			}
		}
		return utf8.ValidString(s)
	}
	// every byte value at every place of strings of 1 to 17 bytes (words
	// of 8 and what is left), and a few multi-byte ones
	for n := 1; n <= 17; n++ {
		for at := 0; at < n; at++ {
			for c := 0; c < 256; c++ {
				b := bytes.Repeat([]byte{'a'}, n)
				b[at] = byte(c)
				if got, want := plainString(string(b)), plain(string(b)); got != want {
					t.Fatalf("plainString(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
	for _, s := range []string{"", "é", "用户用户用户", "abcdefgé", "abcdefg\xc3", "\xc3\xa9abcdefgh", "😀😀", "abcdefgh\x7f"} {
		if got, want := plainString(s), plain(s); got != want {
			t.Errorf("plainString(%q) = %v, want %v", s, got, want)
		}
	}
}

// pushAnswer is a push/single answer for targets, as pushsim writes it.
func pushAnswer(targets []string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"timestamp":1764547200000,"duration":0,"data":[`)
	for i, t := range targets {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%q,"pushStatus":"ASYNC_SUCCESS","desc":"async success."}`, t)
	}
	b.WriteString("]}\n")
	return b.Bytes()
}

// BenchmarkDecodePushSingle decodes a 100-result answer: pushResults
// against encoding/json.
func BenchmarkDecodePushSingle(b *testing.B) {
	targets := make([]string, 100)
	for i := range targets {
		targets[i] = fmt.Sprintf("user%07d", i)
	}
	body := pushAnswer(targets)
	b.Run("pushResults", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := pushResults{targets: targets, out: make([]TargetResult, 0, len(targets))}
			if err := r.decodeBody(body); err != nil || len(r.out) != 100 {
				b.Fatal(err, len(r.out))
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if res, err := viaEncodingJSON(body); err != nil || len(res) != 100 {
				b.Fatal(err)
			}
		}
	})
}
