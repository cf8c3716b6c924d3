package easemob

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
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

// decodesAsEncodingJSON fails t unless pushResults decodes body to what
// encoding/json does, and refuses it when encoding/json does.
func decodesAsEncodingJSON(t *testing.T, body string) {
	t.Helper()
	got, err := decodePush(t, []string{"u1", "u2"}, body)
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
	f.Fuzz(func(t *testing.T, body string) {
		decodesAsEncodingJSON(t, body)
	})
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
