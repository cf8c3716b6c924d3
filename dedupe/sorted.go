package dedupe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// Survey reads an audience once and counts its lines as CountLines does.
// It also reports whether its ids (the lines Run would keep: trimmed,
// non-empty, no longer than maxLine, kept by keep) never decrease, in
// which case a repeat can only follow its id and Run with Options.Sorted
// de-duplicates it without a set. sorted is never true when they do
// decrease; it may be false for an audience that is sorted but for a line
// keep refuses that sorts above the kept ids after it. Once an id is
// smaller than the one before, the rest is only counted. It is SurveyBy
// with no key.
func Survey(r io.Reader, keep func(id []byte) bool, maxLine int) (lines int64, sorted bool, err error) {
	return SurveyBy(r, keep, nil, maxLine)
}

// SurveyBy is Survey for Run with Options.Key: it counts lines as
// CountLines does and reports whether the keys of the lines Run would keep
// (key of each trimmed, non-empty line no longer than maxLine that keep
// accepts) never decrease. Then a line whose key was seen can only follow
// a line with that key, and Run with Options.Sorted and the same Key keeps
// the first line of each key without a set. With key, keep is asked of
// every line before key (key is only given lines keep accepted, as
// Options.Key is), so a refused line never makes sorted false; with key
// nil the key is the whole line and SurveyBy is Survey (keep is asked only
// of a line below the one before). Once a key is smaller than the one
// before, the rest is only counted.
func SurveyBy(r io.Reader, keep func(line []byte) bool, key func(line []byte) []byte, maxLine int) (lines int64, sorted bool, err error) {
	if maxLine <= 0 {
		maxLine = 64 << 10
	}
	br := bufio.NewReaderSize(r, max(maxLine, 64<<10))
	var prev []byte
	sorted = true
	err = eachLine(br, maxLine, func(line []byte, tooLong bool) error {
		lines++
		if tooLong {
			return nil
		}
		id := trim(line)
		if len(id) == 0 {
			return nil
		}
		if key != nil {
			if keep != nil && !keep(id) {
				return nil
			}
			k := key(id)
			if bytes.Compare(k, prev) >= 0 {
				prev = append(prev[:0], k...)
				return nil
			}
			sorted = false
			return errUnsorted
		}
		// keep is asked only of an id smaller than the one before: prev
		// never decreases, so every kept id is at least every kept id
		// before it (a skipped line raising prev can only make Survey say
		// "not sorted" when it is: slower, never wrong).
		if bytes.Compare(id, prev) >= 0 {
			prev = append(prev[:0], id...)
			return nil
		}
		if keep != nil && !keep(id) {
			return nil
		}
		sorted = false
		return errUnsorted
	})
	if errors.Is(err, errUnsorted) {
		// the rest from the line after this one: what br holds, then r
		rest, _ := br.Peek(br.Buffered())
		n, err := CountLines(io.MultiReader(bytes.NewReader(rest), r))
		return lines + n, false, err
	}
	return lines, sorted, err
}

var errUnsorted = errors.New("dedupe: audience not sorted")

// runSorted is Run for an audience whose ids (with Options.Key, keys) never
// decrease (Survey, SurveyBy): one pass, each id compared with the one
// before. Its output is what a set would give in one pass (every id at its
// first line; with Key, the first line of every key). An id smaller than
// the one before (the audience is not what Survey read) ends it with an
// error; the ids before it have been emitted.
func runSorted(ctx context.Context, open Opener, o Options, emit func(id []byte) error) (Stats, error) {
	var st Stats
	var prev []byte
	have := false
	lines, long, err := pass(ctx, open, o, func(line []byte) error {
		if o.Keep != nil && !o.Keep(line) {
			st.Skipped++
			return nil
		}
		key := line
		if o.Key != nil {
			key = o.Key(line)
		}
		if have {
			switch c := bytes.Compare(key, prev); {
			case c == 0:
				st.Duplicates++
				return nil
			case c < 0:
				return fmt.Errorf("dedupe: the audience was surveyed as sorted, but %q comes after %q", key, prev)
			}
		}
		prev, have = append(prev[:0], key...), true
		st.Unique++
		return emit(line)
	})
	st.Lines, st.Skipped, st.Passes, st.Reads = lines, st.Skipped+long, 1, 1
	return st, err
}
