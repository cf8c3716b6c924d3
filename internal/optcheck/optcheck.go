// Package optcheck collects the out-of-range fields of an options struct,
// each error naming its field, for the validate() that follows
// WithDefaults() in every package:
//
//	func (o Options) validate() error {
//		c := optcheck.New("store: Options")
//		c.Check("BatchTTL", o.BatchTTL > 0, o.BatchTTL)
//		return c.Err()
//	}
package optcheck

import (
	"errors"
	"fmt"
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

// Add records err (nil: nothing), e.g. a nested struct's validate.
func (c *Checks) Add(err error) {
	if err != nil {
		c.errs = append(c.errs, err)
	}
}

// Err is every failed check joined, or nil.
func (c *Checks) Err() error { return errors.Join(c.errs...) }
