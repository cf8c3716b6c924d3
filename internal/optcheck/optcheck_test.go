package optcheck_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/campaignd/campaignd/internal/optcheck"
)

func TestChecksNameEveryFailedField(t *testing.T) {
	t.Parallel()
	c := optcheck.New("pkg: Options")
	c.Check("Workers", 4 > 0, 4)
	c.Check("Timeout", -time.Second > 0, -time.Second)
	c.Check("Size", -1 > 0, -1)
	c.Add(nil)
	c.Add(errors.New("pkg: Nested.X out of range: 0"))
	err := c.Err()
	for _, want := range []string{"pkg: Options.Timeout out of range: -1s", "pkg: Options.Size out of range: -1", "Nested.X"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: want %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "Workers") {
		t.Errorf("a field in range was named: %v", err)
	}
	if optcheck.New("x").Err() != nil {
		t.Error("no failed check, yet an error")
	}
}

func TestPositiveReadsTheNamedFields(t *testing.T) {
	t.Parallel()
	type opts struct {
		N     int
		D     time.Duration
		F     float64
		Name  string
		Fine  int
		Other uint
	}
	c := optcheck.New("x: opts")
	c.Positive(opts{N: 0, D: -time.Second, F: 0.5, Fine: 3, Other: 0}, "N", "D", "F", "Fine", "Other")
	err := c.Err()
	for _, want := range []string{"x: opts.N out of range: 0", "x: opts.D out of range: -1s", "x: opts.Other out of range: 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: want %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "Fine") || strings.Contains(err.Error(), ".F ") {
		t.Errorf("a positive field was named: %v", err)
	}
	for _, bad := range []string{"Missing", "Name"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Positive(%q) did not panic", bad)
				}
			}()
			optcheck.New("x: opts").Positive(opts{}, bad)
		}()
	}
}

func Example() {
	type Options struct{ Workers int }
	o := Options{Workers: -2}
	c := optcheck.New("queue: Options")
	c.Check("Workers", o.Workers > 0, o.Workers)
	fmt.Println(c.Err())
	// Output: queue: Options.Workers out of range: -2
}
