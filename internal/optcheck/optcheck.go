// Package optcheck collects the out-of-range fields of an options struct,
// each error naming its field, for the validate() that follows
// WithDefaults() in every package:
//
//	func (o Options) validate() error {
//		c := optcheck.New("store: Options")
//		c.Positive(o, "BatchTTL", "FinishedTTL")
//		c.Check("Margin", o.Margin < 1, o.Margin)
//		return c.Err()
//	}
package optcheck

import (
	"errors"
	"fmt"
	"math"
	"reflect"
)

// Checks gathers the failed checks of one options struct.
type Checks struct {
	owner string
	errs  []error
}

// New starts the checks of owner (e.g. "store: Options").
func New(owner string) *Checks { return &Checks{owner: owner} }

// Check records field as out of range, with its value, unless ok.
func (c *Checks) Check(field string, ok bool, value any) {
	if !ok {
		c.errs = append(c.errs, fmt.Errorf("%s.%s out of range: %v", c.owner, field, value))
	}
}

// Positive records each named field of the struct opts that is not more
// than 0 (ints, floats and durations). A name that is not a numeric field
// of opts is a bug in the caller: Positive panics on it.
func (c *Checks) Positive(opts any, fields ...string) {
	v := reflect.ValueOf(opts)
	for _, name := range fields {
		f := v.FieldByName(name)
		ok := false
		switch {
		case !f.IsValid():
			panic(fmt.Sprintf("optcheck: %s has no field %s", c.owner, name))
		case f.CanInt():
			ok = f.Int() > 0
		case f.CanUint():
			ok = f.Uint() > 0
		case f.CanFloat():
			ok = f.Float() > 0 && !math.IsInf(f.Float(), 0)
		default:
			panic(fmt.Sprintf("optcheck: %s.%s is not a number", c.owner, name))
		}
		c.Check(name, ok, f.Interface())
	}
}

// Add records err (nil: nothing), e.g. a nested struct's validate.
func (c *Checks) Add(err error) {
	if err != nil {
		c.errs = append(c.errs, err)
	}
}

// Err is every failed check joined, or nil.
func (c *Checks) Err() error { return errors.Join(c.errs...) }
