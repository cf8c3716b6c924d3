package dedupe

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// audience builds n lines of ids with dup extra copies of random earlier
// ids, shuffled when shuffle is set (else each copy follows soon after).
func audience(n, dup int, shuffle bool, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 1))
	lines := make([]string, 0, n+dup)
	for i := 0; i < n; i++ {
		lines = append(lines, fmt.Sprintf("user%07d", i))
	}
	for i := 0; i < dup; i++ {
		lines = append(lines, lines[r.IntN(n)])
	}
	if shuffle {
		r.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	}
	return lines
}

func opener(text string) Opener {
	return func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(text)), nil
	}
}

func TestSetIsExactWhenEveryHashCollides(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		hash func([]byte) uint64
	}{
		{"constant hash", func([]byte) uint64 { return 42 }},
		{"same tag, other slots", func(b []byte) uint64 { return 7<<32 | uint64(len(b)) }},
		{"keyed xxhash", Hasher(99)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := NewSet(tc.hash, 0) // grows many times
			t.Cleanup(s.Close)
			want := map[string]bool{}
			for _, id := range audience(3000, 1000, true, 5) {
				if got, isNew := s.Add([]byte(id)), !want[id]; got != isNew {
					t.Fatalf("Add(%q) = %v, want %v", id, got, isNew)
				}
				want[id] = true
			}
			if s.Len() != len(want) {
				t.Fatalf("Len = %d, want %d", s.Len(), len(want))
			}
			// AddAll, in blocks with repeats inside a block and across them
			all := NewSet(tc.hash, 100)
			t.Cleanup(all.Close)
			seen := map[string]bool{}
			lines := audience(3000, 3000, true, 6)
			for lo := 0; lo < len(lines); lo += 37 {
				var hs []uint64
				var ids [][]byte
				for _, id := range lines[lo:min(lo+37, len(lines))] {
					hs, ids = append(hs, tc.hash([]byte(id))), append(ids, []byte(id))
				}
				isNew := make([]bool, len(ids))
				all.AddAll(hs, ids, isNew)
				for i, id := range ids {
					if isNew[i] == seen[string(id)] {
						t.Fatalf("AddAll: %q new = %v", id, isNew[i])
					}
					seen[string(id)] = true
				}
			}
		})
	}
}

func TestSetResetKeepsMemoryAndForgets(t *testing.T) {
	t.Parallel()
	s := NewSet(Hasher(1), 10)
	t.Cleanup(s.Close)
	for i := 0; i < 50_000; i++ {
		s.Add([]byte(fmt.Sprint("id", i)))
	}
	before := s.Bytes()
	s.Reset()
	if s.Len() != 0 || s.Bytes() != before {
		t.Fatalf("after Reset: Len %d, Bytes %d (was %d)", s.Len(), s.Bytes(), before)
	}
	for i := 0; i < 50_000; i++ {
		if !s.Add([]byte(fmt.Sprint("id", i))) {
			t.Fatalf("id%d is still in the set after Reset", i)
		}
	}
	if s.Bytes() != before {
		t.Fatalf("refilling after Reset took %d bytes, not the %d kept", s.Bytes(), before)
	}
}

func TestSetKeepsLongAndOddIDs(t *testing.T) {
	t.Parallel()
	s := NewSet(Hasher(3), 0)
	t.Cleanup(s.Close)
	ids := []string{"a", strings.Repeat("x", 127), strings.Repeat("y", 128), strings.Repeat("z", 300), "名字", "a\x00b", strings.Repeat("w", maxChunk-8)}
	for _, id := range ids {
		if !s.Add([]byte(id)) {
			t.Fatalf("%.20q not new", id)
		}
	}
	for _, id := range ids {
		if s.Add([]byte(id)) {
			t.Fatalf("%.20q new twice", id)
		}
	}
	if s.Add([]byte(strings.Repeat("x", 126))) == false {
		t.Fatal("a prefix of an id was taken for it")
	}
}

// TestRunEmitsEveryIDOnce: whatever the parts, order and duplicate
// pattern, every distinct id comes out exactly once, and the same
// options give the same output.
func TestRunEmitsEveryIDOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		n, dup  int
		shuffle bool
		parts   int
	}{
		{"sorted, 1 part", 20_000, 2_000, false, 1},
		{"random, 1 part", 20_000, 2_000, true, 1},
		{"random, 3 parts", 20_000, 2_000, true, 3},
		{"random, 7 parts, many repeats", 5_000, 30_000, true, 7},
		{"sorted, 64 parts", 20_000, 2_000, false, 64},
		{"one id many times", 1, 5_000, true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lines := audience(tc.n, tc.dup, tc.shuffle, 11)
			text := strings.Join(lines, "\n") + "\n"
			var out []string
			st, err := Run(context.Background(), opener(text), Options{Parts: tc.parts, Seed: 77, Expected: ExpectedPerPart(int64(len(lines)), tc.parts)},
				func(id []byte) error { out = append(out, string(id)); return nil })
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, id := range out {
				if seen[id] {
					t.Fatalf("%s emitted twice", id)
				}
				seen[id] = true
			}
			for _, id := range lines {
				if !seen[id] {
					t.Fatalf("%s never emitted", id)
				}
			}
			if st.Unique != int64(len(seen)) || st.Lines != int64(len(lines)) || st.Duplicates != st.Lines-st.Unique || st.Passes != tc.parts {
				t.Fatalf("stats %+v, want %d unique of %d lines in %d passes", st, len(seen), len(lines), tc.parts)
			}
			var again []string
			if _, err := Run(context.Background(), opener(text), Options{Parts: tc.parts, Seed: 77}, func(id []byte) error { again = append(again, string(id)); return nil }); err != nil {
				t.Fatal(err)
			}
			if strings.Join(again, ",") != strings.Join(out, ",") {
				t.Fatal("a second run with the same parts and seed emitted another order")
			}
		})
	}
}

func TestRunLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("L", 200)
	text := "a\r\n  b  \n\n\t\nc\n" + long + "\nbad/id\na\nd" // no newline at the end
	var out []string
	st, err := Run(context.Background(), opener(text), Options{MaxLine: 100, Keep: func(id []byte) bool { return !bytes.ContainsRune(id, '/') }},
		func(id []byte) error { out = append(out, string(id)); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(out, ","); got != "a,b,c,d" {
		t.Fatalf("emitted %q", got)
	}
	if st.Skipped != 2 || st.Duplicates != 1 || st.Lines != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTrimIsTrimSpace(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", " ", "a", " a ", "\ta\r", "\va\f", "a b", "\u00a0a\u00a0", "\u3000名\u3000", "é", " é ", "a\u0085"} {
		if got, want := string(trim([]byte(in))), string(bytes.TrimSpace([]byte(in))); got != want {
			t.Errorf("trim(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRunStopsOnEmitErrorAndReadError(t *testing.T) {
	t.Parallel()
	stop := fmt.Errorf("stop")
	_, err := Run(context.Background(), opener("a\nb\nc\n"), Options{}, func(id []byte) error {
		if string(id) == "b" {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("err = %v, want the emit error", err)
	}
	broken := func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("a\nb"), errReader{})), nil
	}
	if _, err := Run(context.Background(), broken, Options{}, func([]byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "read audience") {
		t.Fatalf("err = %v, want a read error", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, fmt.Errorf("connection reset") }

func TestCountLinesAndParts(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]int64{"": 0, "a": 1, "a\n": 1, "a\nb": 2, "\n\n": 2} {
		if n, err := CountLines(strings.NewReader(text)); err != nil || n != want {
			t.Errorf("CountLines(%q) = %d, %v; want %d", text, n, err, want)
		}
	}
	if p := PartsFor(1<<20, 80_000, 64<<20); p != 1 {
		t.Errorf("a 1 MiB audience needs %d parts", p)
	}
	// 10M ids of 12 bytes: 120 MB of ids and 107 MB of table, over 64 MiB.
	if p := PartsFor(120_000_000, 10_000_000, 64<<20); p < 3 || p > 5 {
		t.Errorf("10M ids in 64 MiB: %d parts", p)
	}
}

// TestRunStaysWithinBudget: a pass's set, sized by ExpectedPerPart for
// PartsFor's parts, stays within the budget.
func TestRunStaysWithinBudget(t *testing.T) {
	t.Parallel()
	lines := audience(300_000, 30_000, true, 3)
	text := strings.Join(lines, "\n") + "\n"
	const budget = 2 << 20
	parts := PartsFor(int64(len(text)), int64(len(lines)), budget)
	st, err := Run(context.Background(), opener(text), Options{Parts: parts, Seed: 5, Expected: ExpectedPerPart(int64(len(lines)), parts)}, func([]byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.PeakBytes > budget {
		t.Fatalf("%d parts: the set peaked at %d bytes, over the %d budget", parts, st.PeakBytes, budget)
	}
	t.Logf("%d lines in %d parts: set peak %d bytes (%.1f B/unique id per part)", len(lines), parts, st.PeakBytes, float64(st.PeakBytes)/float64(st.Unique)*float64(parts))
}

// BenchmarkRun plans 1M ids with 10% duplicates in random order in one
// pass: ids/s and set bytes per id.
func BenchmarkRun(b *testing.B) {
	lines := audience(1_000_000, 100_000, true, 9)
	text := strings.Join(lines, "\n") + "\n"
	b.ResetTimer()
	var st Stats
	for i := 0; i < b.N; i++ {
		var err error
		st, err = Run(context.Background(), opener(text), Options{Seed: 1, Expected: ExpectedPerPart(int64(len(lines)), 1)}, func([]byte) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "ids/s")
	b.ReportMetric(float64(st.PeakBytes)/float64(st.Unique), "set_B/id")
}

// BenchmarkRunSpill plans the same audience in 3 parts with SpillDir: one
// read of the audience, two parts read back from their files.
func BenchmarkRunSpill(b *testing.B) {
	lines := audience(1_000_000, 100_000, true, 9)
	text := strings.Join(lines, "\n") + "\n"
	o := Options{Parts: 3, Seed: 1, Expected: ExpectedPerPart(int64(len(lines)), 3), SpillDir: b.TempDir()}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Run(context.Background(), opener(text), o, func([]byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "ids/s")
}

// BenchmarkRunSorted plans 1M sorted ids with 10% repeats (Options.Sorted).
func BenchmarkRunSorted(b *testing.B) {
	lines := audience(1_000_000, 100_000, false, 9)
	slices.Sort(lines)
	text := strings.Join(lines, "\n") + "\n"
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Run(context.Background(), opener(text), Options{Sorted: true}, func([]byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "ids/s")
}

// runAll runs o over text and returns what it emitted, in order.
func runAll(t *testing.T, text string, o Options, mk func(string, int) *spill) ([]string, Stats) {
	t.Helper()
	var out []string
	st, err := run(context.Background(), opener(text), o, func(id []byte) error { out = append(out, string(id)); return nil }, mk)
	if err != nil {
		t.Fatal(err)
	}
	return out, st
}

// With SpillDir, the audience is read once and every later part comes
// from its file; the output and the counts are exactly those of passes
// that re-read the audience, whether every part file works, none can be
// made, or one fails while being written.
func TestRunWithSpillEmitsWhatReReadingDoes(t *testing.T) {
	t.Parallel()
	lines := audience(20_000, 6_000, true, 21)
	for i := 0; i < len(lines); i += 97 {
		lines[i] = "bad/" + lines[i] // refused by Keep, in every part
	}
	lines = append(lines, strings.Repeat("L", 300), "  padded  ", "")
	text := strings.Join(lines, "\n") + "\n"
	keep := func(id []byte) bool { return !bytes.ContainsRune(id, '/') }
	failLast := func(dir string, parts int) *spill {
		sp := newSpill(dir, parts)
		full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		sp.files[parts-1].Close()
		sp.files[parts-1], sp.w[parts-1] = full, bufio.NewWriterSize(full, 16) // ENOSPC at once
		return sp
	}
	for _, parts := range []int{2, 5, 16} {
		base := Options{Parts: parts, Seed: 3, Keep: keep, MaxLine: 200}
		want, wantSt := runAll(t, text, base, newSpill)
		if wantSt.Reads != parts {
			t.Fatalf("without SpillDir %d of %d passes read the audience", wantSt.Reads, parts)
		}
		for _, tc := range []struct {
			name      string
			dir       string
			mk        func(string, int) *spill
			reads     int
			spillFail bool
		}{
			{"every part spilled", t.TempDir(), newSpill, 1, false},
			{"no spill file can be made", filepath.Join(t.TempDir(), "missing"), newSpill, parts, true},
			{"the last part's file fails", t.TempDir(), failLast, 2, true},
		} {
			o := base
			o.SpillDir = tc.dir
			got, st := runAll(t, text, o, tc.mk)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("%d parts, %s: the output differs from re-reading passes' (%d ids, want %d)", parts, tc.name, len(got), len(want))
			}
			if st.Lines != wantSt.Lines || st.Unique != wantSt.Unique || st.Duplicates != wantSt.Duplicates || st.Skipped != wantSt.Skipped || st.Passes != parts {
				t.Fatalf("%d parts, %s: stats %+v, want %+v", parts, tc.name, st, wantSt)
			}
			if st.Reads != tc.reads || (st.SpillErr != nil) != tc.spillFail {
				t.Fatalf("%d parts, %s: %d reads (want %d), spill error %v", parts, tc.name, st.Reads, tc.reads, st.SpillErr)
			}
			if tc.name == "every part spilled" {
				if entries, _ := os.ReadDir(tc.dir); len(entries) != 0 {
					t.Fatalf("spill files left in %s: %d", tc.dir, len(entries))
				}
			}
		}
	}
}

// A failing emit while a spilled part is read back ends Run with its
// error, and a second Run emits the same output from the start.
func TestRunWithSpillStopsOnEmitError(t *testing.T) {
	t.Parallel()
	lines := audience(5_000, 1_000, true, 8)
	text := strings.Join(lines, "\n") + "\n"
	o := Options{Parts: 4, Seed: 9, SpillDir: t.TempDir()}
	want, _ := runAll(t, text, o, newSpill)
	stop := fmt.Errorf("stop")
	n := 0
	_, err := Run(context.Background(), opener(text), o, func([]byte) error {
		if n++; n == len(want)-10 { // in the last part, read from its file
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("err = %v, want the emit error", err)
	}
	again, _ := runAll(t, text, o, newSpill)
	if strings.Join(again, ",") != strings.Join(want, ",") {
		t.Fatal("a second run emitted another output")
	}
}

// Survey counts lines as CountLines does and finds an audience sorted
// when its kept ids never decrease (skipped lines do not count); Run with
// Sorted then emits what a set in one pass does.
func TestSurveyAndSortedRun(t *testing.T) {
	t.Parallel()
	keep := func(id []byte) bool { return !bytes.ContainsRune(id, '/') }
	sortedLines := audience(5_000, 1_500, false, 4) // each repeat right after its id
	slices.Sort(sortedLines)
	long := strings.Repeat("z", 300)
	for _, tc := range []struct {
		name   string
		text   string
		sorted bool
	}{
		{"empty", "", true},
		{"one id, no newline", "a", true},
		{"sorted with repeats", strings.Join(sortedLines, "\n") + "\n", true},
		{"sorted; blank, long and padded lines anywhere, an invalid one in order", "a\n\n  b \n" + long + "\nb\r\nb/invalid\nc\n\t\nc", true},
		{"an invalid line below the one before", "a\nb\na/invalid\nc\n", true},
		// cautious: an invalid line raises the bar for the valid ones after it
		{"an invalid line above the ones after it", "a\nzz/invalid\nb\n", false},
		{"descends at the end", strings.Join(sortedLines, "\n") + "\naaa\n", false},
		{"descends at once", "b\na\n" + strings.Join(sortedLines, "\n"), false},
		{"random", strings.Join(audience(5_000, 1_500, true, 4), "\n") + "\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want, _ := CountLines(strings.NewReader(tc.text))
			lines, sorted, err := Survey(strings.NewReader(tc.text), keep, 200)
			if err != nil || lines != want || sorted != tc.sorted {
				t.Fatalf("Survey = %d lines, sorted %v, %v; want %d, %v", lines, sorted, err, want, tc.sorted)
			}
			if !sorted {
				return
			}
			base := Options{Keep: keep, MaxLine: 200, Seed: 1}
			setOut, setSt := runAll(t, tc.text, base, newSpill)
			o := base
			o.Sorted = true
			out, st := runAll(t, tc.text, o, newSpill)
			if strings.Join(out, ",") != strings.Join(setOut, ",") {
				t.Fatalf("sorted run emitted %d ids, the set %d, or in another order", len(out), len(setOut))
			}
			if st.Lines != setSt.Lines || st.Unique != setSt.Unique || st.Duplicates != setSt.Duplicates || st.Skipped != setSt.Skipped || st.PeakBytes != 0 {
				t.Fatalf("sorted run stats %+v, the set's %+v", st, setSt)
			}
		})
	}
	// A sorted run over ids that descend stops with an error.
	_, err := Run(context.Background(), opener("a\nc\nb\n"), Options{Sorted: true}, func([]byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "sorted") {
		t.Fatalf("err = %v, want the audience not sorted", err)
	}
}
