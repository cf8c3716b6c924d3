package dedupe_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/campaignd/campaignd/dedupe"
)

func ExampleRun() {
	audience := "u3\nu1\n u3 \n\nu2\nu1\n"
	open := func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(audience)), nil
	}
	st, err := dedupe.Run(context.Background(), open, dedupe.Options{Seed: 42}, func(id []byte) error {
		fmt.Println(string(id))
		return nil
	})
	fmt.Println(st.Unique, "unique,", st.Duplicates, "repeats,", err)
	// Output:
	// u3
	// u1
	// u2
	// 3 unique, 2 repeats, <nil>
}

func ExampleSurvey() {
	for _, audience := range []string{"a\na\nb\nc\n", "b\na\n"} {
		lines, sorted, _ := dedupe.Survey(strings.NewReader(audience), nil, 0)
		fmt.Println(lines, sorted)
	}
	// Output:
	// 4 true
	// 2 false
}

// A local-time audience lists "id,Zone": an id listed twice is one target,
// its first line, which is emitted whole so the zone goes with it.
func ExampleRun_key() {
	audience := "u1,Asia/Tokyo\nu2,UTC\nu1,Europe/Paris\n u3,America/New_York \nu4\n"
	open := func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(audience)), nil
	}
	o := dedupe.Options{
		Seed: 42,
		Keep: func(line []byte) bool { return bytes.IndexByte(line, ',') > 0 },
		Key:  func(line []byte) []byte { return line[:bytes.IndexByte(line, ',')] }, // the id
	}
	st, err := dedupe.Run(context.Background(), open, o, func(line []byte) error {
		fmt.Println(string(line))
		return nil
	})
	fmt.Println(st.Unique, "unique,", st.Duplicates, "repeats,", st.Skipped, "skipped,", err)
	// Output:
	// u1,Asia/Tokyo
	// u2,UTC
	// u3,America/New_York
	// 3 unique, 1 repeats, 1 skipped, <nil>
}

func ExampleSurveyBy() {
	id := func(line []byte) []byte { return line[:bytes.IndexByte(line, ',')] }
	audience := "u1,UTC\nu1,Asia/Tokyo\nu2,UTC\n" // the ids are sorted, the lines are not
	_, byID, _ := dedupe.SurveyBy(strings.NewReader(audience), nil, id, 0)
	_, byLine, _ := dedupe.Survey(strings.NewReader(audience), nil, 0)
	fmt.Println(byID, byLine)
	// Output:
	// true false
}
