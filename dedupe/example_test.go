package dedupe_test

import (
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
