package dedupe

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// zones are what a local-time audience's lines name after their id.
var zones = []string{"Asia/Tokyo", "Europe/Paris", "UTC", "America/New_York", "Australia/Sydney"}

// zoned builds n lines "id,Zone" with dup extra lines of random earlier
// ids, each with a zone of its own (so most repeats are other lines than
// their first), shuffled when shuffle is set.
func zoned(n, dup int, shuffle bool, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 2))
	lines := make([]string, 0, n+dup)
	for i := 0; i < n; i++ {
		lines = append(lines, fmt.Sprintf("user%07d,%s", i, zones[r.IntN(len(zones))]))
	}
	for i := 0; i < dup; i++ {
		id, _, _ := strings.Cut(lines[r.IntN(n)], ",")
		lines = append(lines, id+","+zones[r.IntN(len(zones))])
	}
	if shuffle {
		r.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	}
	return lines
}

// validZoned is a Keep for zoned lines: an id, a comma and a zone, and no
// id starting "bad".
func validZoned(line []byte) bool {
	i := bytes.IndexByte(line, ',')
	return i > 0 && i < len(line)-1 && !bytes.HasPrefix(line, []byte("bad"))
}

// idKey is the Key of a zoned line: the id before the comma. It fails t
// when given a line validZoned refuses, which Run must never do.
func idKey(t testing.TB) func([]byte) []byte {
	return func(line []byte) []byte {
		if !validZoned(line) {
			t.Errorf("Key was given %q, which Keep refuses", line)
			return line
		}
		return line[:bytes.IndexByte(line, ',')]
	}
}

// firstOfEachKey is what a keyed Run must emit over lines, in the
// audience's order (its order with one part): the first kept line of
// every key, trimmed; with the counts Run's Stats must give.
func firstOfEachKey(lines []string, keep func([]byte) bool, key func([]byte) []byte, maxLine int) (want []string, st Stats) {
	seen := map[string]bool{}
	for _, l := range lines {
		line := bytes.TrimSpace([]byte(l))
		switch {
		case len(l) > maxLine:
			st.Skipped++
			continue
		case len(line) == 0:
			continue
		}
		st.Lines++
		if !keep(line) {
			st.Skipped++
			continue
		}
		k := string(key(line))
		if seen[k] {
			st.Duplicates++
			continue
		}
		seen[k] = true
		st.Unique++
		want = append(want, string(line))
	}
	return want, st
}

// checkPartOrder fails t unless got holds exactly the lines of want, in
// the order of their parts (seed and parts as Run's) and, within a part,
// in want's order.
func checkPartOrder(t *testing.T, got, want []string, key func([]byte) []byte, seed uint64, parts int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("emitted %d lines, want %d", len(got), len(want))
	}
	at := make(map[string]int, len(want))
	for i, l := range want {
		at[l] = i
	}
	hash := Hasher(seed)
	lastPart, last := 0, -1
	for _, l := range got {
		i, ok := at[l]
		if !ok {
			t.Fatalf("%q emitted, which is not the first line of its key (or emitted twice)", l)
		}
		delete(at, l)
		p := part(hash(key([]byte(l))), parts)
		switch {
		case p < lastPart:
			t.Fatalf("%q of part %d emitted after part %d", l, p, lastPart)
		case p > lastPart:
			lastPart, last = p, -1
		}
		if i < last {
			t.Fatalf("%q emitted out of the audience's order within part %d", l, p)
		}
		last = i
	}
}

// TestRunKeyEmitsTheFirstLineOfEachKey: with Key, whatever the parts and
// spilling, Run emits the whole first line of every key once, in the
// order of the parts and, within one, of the audience; the same lines
// whatever Parts is, the same order with and without SpillDir.
func TestRunKeyEmitsTheFirstLineOfEachKey(t *testing.T) {
	t.Parallel()
	lines := zoned(6_000, 4_000, true, 31)
	for i := 0; i < len(lines); i += 89 {
		lines[i] = "bad" + lines[i] // refused by Keep
	}
	for i := 50; i < len(lines); i += 401 {
		lines[i] = strings.ReplaceAll(lines[i], ",", "") // no comma: refused
	}
	lines = append(lines, "  user0000001,UTC\t", "", strings.Repeat("L", 150)+",UTC", "user0000002,Asia/Tokyo")
	text := strings.Join(lines, "\n") + "\n"
	const maxLine = 100
	key := idKey(t)
	want, wantSt := firstOfEachKey(lines, validZoned, key, maxLine)
	if wantSt.Duplicates < 3_000 || wantSt.Skipped < 80 {
		t.Fatalf("the audience has %d repeats and %d skipped lines: too few to test", wantSt.Duplicates, wantSt.Skipped)
	}
	outs := map[int][]string{} // [parts] without SpillDir
	for _, tc := range []struct {
		name  string
		parts int
		dir   string
		reads int
	}{
		{"1 part", 1, "", 1},
		{"3 parts", 3, "", 3},
		{"3 parts, spilled", 3, t.TempDir(), 1},
		{"7 parts", 7, "", 7},
		{"7 parts, spilled", 7, t.TempDir(), 1},
		{"3 parts, no spill file can be made", 3, filepath.Join(t.TempDir(), "missing"), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Parts: tc.parts, Seed: 13, Keep: validZoned, Key: key, MaxLine: maxLine, SpillDir: tc.dir,
				Expected: ExpectedPerPart(int64(len(lines)), tc.parts)}
			got, st := runAll(t, text, o, newSpill)
			if tc.parts == 1 && strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatal("one part: not the first line of each key in the audience's order")
			}
			checkPartOrder(t, got, want, key, o.Seed, tc.parts)
			if st.Unique != wantSt.Unique || st.Duplicates != wantSt.Duplicates || st.Skipped != wantSt.Skipped || st.Lines != wantSt.Lines ||
				st.Passes != tc.parts || st.Reads != tc.reads {
				t.Fatalf("stats %+v, want %+v in %d passes, %d reads", st, wantSt, tc.parts, tc.reads)
			}
			if tc.dir == "" {
				outs[tc.parts] = got
			} else if prev, ok := outs[tc.parts]; ok && strings.Join(got, "\n") != strings.Join(prev, "\n") {
				t.Fatal("the output differs from re-reading passes'")
			}
			if tc.parts > 1 && tc.dir != "" && tc.reads == 1 && st.Spilled == 0 {
				t.Fatal("nothing spilled")
			}
		})
	}
	// the same lines whatever the parts: as sets
	one := slices.Sorted(slices.Values(outs[1]))
	for _, parts := range []int{3, 7} {
		if got := slices.Sorted(slices.Values(outs[parts])); !slices.Equal(got, one) {
			t.Fatalf("%d parts emitted other lines than 1 part", parts)
		}
	}
}

// TestRunKeyFirstLineWins: an id listed with two zones is one target, the
// line first in the audience; in every mode.
func TestRunKeyFirstLineWins(t *testing.T) {
	t.Parallel()
	text := "u1,Asia/Tokyo\nu1,Europe/Paris\n"
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"1 part", Options{}},
		{"3 parts", Options{Parts: 3}},
		{"3 parts, spilled", Options{Parts: 3, SpillDir: t.TempDir()}},
		{"sorted", Options{Sorted: true}},
	} {
		for seed := range uint64(8) { // u1 in each part in turn
			o := tc.o
			o.Seed, o.Keep, o.Key = seed, validZoned, idKey(t)
			got, st := runAll(t, text, o, newSpill)
			if strings.Join(got, ";") != "u1,Asia/Tokyo" || st.Unique != 1 || st.Duplicates != 1 || st.Skipped != 0 || st.Lines != 2 {
				t.Fatalf("%s, seed %d: emitted %q, stats %+v", tc.name, seed, got, st)
			}
		}
	}
	// without Key both lines are ids of their own
	if got, _ := runAll(t, text, Options{}, newSpill); len(got) != 2 {
		t.Fatalf("without Key: emitted %q", got)
	}
}

// TestRunKeyOutsideTheLine: a Key that gives a slice of its own rather
// than a part of the line (here, the id in lower case) works as well.
func TestRunKeyOutsideTheLine(t *testing.T) {
	t.Parallel()
	lower := func(line []byte) []byte {
		id, _, _ := bytes.Cut(line, []byte(","))
		return bytes.ToLower(id)
	}
	lines := zoned(3_000, 1_000, true, 5)
	for i := 0; i < len(lines); i += 3 {
		lines[i] = strings.ToUpper(lines[i][:1]) + lines[i][1:] // User..., the same target as user...
	}
	text := strings.Join(lines, "\n") + "\n"
	want, wantSt := firstOfEachKey(lines, func([]byte) bool { return true }, lower, 64<<10)
	if len(want) != 3_000 {
		t.Fatalf("%d keys, want 3000", len(want))
	}
	for _, o := range []Options{{Parts: 1}, {Parts: 4}, {Parts: 4, SpillDir: t.TempDir()}} {
		o.Key, o.Seed = lower, 3
		got, st := runAll(t, text, o, newSpill)
		checkPartOrder(t, got, want, lower, o.Seed, o.Parts)
		if st.Unique != wantSt.Unique || st.Duplicates != wantSt.Duplicates {
			t.Fatalf("%d parts: stats %+v", o.Parts, st)
		}
	}
}

// SurveyBy decides "sorted" on the keys of the lines keep accepts; Run
// with Sorted and the same Key then emits what a set does.
func TestSurveyByAndSortedKeyedRun(t *testing.T) {
	t.Parallel()
	key := idKey(t)
	sortedLines := zoned(4_000, 2_000, false, 8)
	slices.SortStableFunc(sortedLines, func(a, b string) int { // by id only: zones in any order
		return bytes.Compare(key([]byte(a)), key([]byte(b)))
	})
	long := strings.Repeat("z", 300) + ",UTC"
	for _, tc := range []struct {
		name   string
		text   string
		sorted bool // SurveyBy with key
		whole  bool // Survey, the whole lines
	}{
		{"empty", "", true, true},
		{"one line, no newline", "u1,UTC", true, true},
		{"one id, zones descending", "u1,Europe/Paris\nu1,Asia/Tokyo\nu2,UTC\n", true, false},
		{"sorted by id with repeats", strings.Join(sortedLines, "\n") + "\n", true, false},
		{"blank, long, padded and refused lines anywhere", "a,UTC\n\n  b,UTC \n" + long + "\nb,Asia/Tokyo\r\nbad,UTC\nno-zone\nc,UTC\n\t\nc,UTC", true, false},
		// exact: a refused line never raises the bar (Survey is cautious)
		{"a refused line above the ones after it", "a,UTC\nzz-no-zone\nb,UTC\n", true, false},
		{"ids descend at the end", strings.Join(sortedLines, "\n") + "\na,UTC\nb\nc\n\n", false, false},
		{"ids descend at once", "b,UTC\na,UTC\n" + strings.Join(sortedLines, "\n"), false, false},
		{"random", strings.Join(zoned(4_000, 2_000, true, 8), "\n") + "\n", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := CountLines(strings.NewReader(tc.text))
			lines, sorted, err := SurveyBy(strings.NewReader(tc.text), validZoned, key, 200)
			if err != nil || lines != want || sorted != tc.sorted {
				t.Fatalf("SurveyBy = %d lines, sorted %v, %v; want %d, %v", lines, sorted, err, want, tc.sorted)
			}
			// no key: the whole lines, as Survey
			for _, survey := range []func() (int64, bool, error){
				func() (int64, bool, error) { return Survey(strings.NewReader(tc.text), validZoned, 200) },
				func() (int64, bool, error) { return SurveyBy(strings.NewReader(tc.text), validZoned, nil, 200) },
			} {
				if lines, sorted, err := survey(); err != nil || lines != want || sorted != tc.whole {
					t.Fatalf("Survey = %d lines, sorted %v, %v; want %d, %v", lines, sorted, err, want, tc.whole)
				}
			}
			if !sorted {
				return
			}
			base := Options{Keep: validZoned, Key: key, MaxLine: 200, Seed: 1}
			setOut, setSt := runAll(t, tc.text, base, newSpill)
			o := base
			o.Sorted = true
			out, st := runAll(t, tc.text, o, newSpill)
			if strings.Join(out, "\n") != strings.Join(setOut, "\n") {
				t.Fatalf("sorted run emitted %d lines, the set %d, or in another order", len(out), len(setOut))
			}
			if st.Lines != setSt.Lines || st.Unique != setSt.Unique || st.Duplicates != setSt.Duplicates || st.Skipped != setSt.Skipped || st.PeakBytes != 0 {
				t.Fatalf("sorted run stats %+v, the set's %+v", st, setSt)
			}
		})
	}
	// A sorted run over keys that descend stops with an error, after the
	// lines before; lines that descend with their keys equal do not.
	var out []string
	_, err := Run(context.Background(), opener("a,UTC\nc,UTC\nb,UTC\n"), Options{Sorted: true, Key: key}, func(line []byte) error {
		out = append(out, string(line))
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "sorted") || strings.Join(out, ";") != "a,UTC;c,UTC" {
		t.Fatalf("err = %v after %q, want the audience not sorted after a and c", err, out)
	}
	got, st := runAll(t, "a,UTC\na,Asia/Tokyo\nb,UTC\n", Options{Sorted: true, Key: key}, newSpill)
	if strings.Join(got, ";") != "a,UTC;b,UTC" || st.Duplicates != 1 {
		t.Fatalf("emitted %q, stats %+v", got, st)
	}
}

func TestWithin(t *testing.T) {
	t.Parallel()
	big := []byte("0123456789")
	line := big[2:6] // "2345", with room after it
	for _, tc := range []struct {
		name string
		sub  []byte
		off  int
		ok   bool
	}{
		{"the line", line, 0, true},
		{"a prefix", line[:2], 0, true},
		{"a suffix", line[3:], 3, true},
		{"the middle", line[1:3], 1, true},
		{"empty", nil, 0, true},
		{"empty, elsewhere", big[9:9], 0, true},
		{"before the line", big[:2], 0, false},
		{"overlapping its start", big[1:4], 0, false},
		{"running past its end", big[4:8], 0, false},
		{"after the line", big[6:8], 0, false},
		{"a copy", []byte("23"), 0, false},
	} {
		if off, ok := within(line, tc.sub); off != tc.off || ok != tc.ok {
			t.Errorf("%s: within = %d, %v; want %d, %v", tc.name, off, ok, tc.off, tc.ok)
		}
	}
	if _, ok := within(nil, []byte("a")); ok {
		t.Error("a byte within an empty line")
	}
}

// Neither the whole-line nor the keyed path allocates per line: a Run over
// a hundred times the lines makes about as many allocations.
func TestRunAllocatesNothingPerLine(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates where the compiler would not")
	}
	for _, keyed := range []bool{false, true} {
		allocs := func(n int) float64 {
			lines := zoned(n, n/10, true, 4)
			text := strings.Join(lines, "\n") + "\n"
			o := Options{Seed: 1, Expected: ExpectedPerPart(int64(len(lines)), 1)}
			if keyed {
				o.Keep, o.Key = validZoned, idKey(t)
			}
			return testing.AllocsPerRun(3, func() {
				if _, err := Run(context.Background(), opener(text), o, func([]byte) error { return nil }); err != nil {
					t.Fatal(err)
				}
			})
		}
		small, large := allocs(1_000), allocs(100_000)
		if large > small+20 {
			t.Errorf("keyed %v: %.0f allocations for 1,100 lines, %.0f for 110,000", keyed, small, large)
		}
	}
}

// BenchmarkRunKey is BenchmarkRun over "id,Zone" lines de-duplicated by
// their id (Options.Key): lines/s.
func BenchmarkRunKey(b *testing.B) {
	lines := zoned(1_000_000, 100_000, true, 9)
	text := strings.Join(lines, "\n") + "\n"
	id := func(line []byte) []byte { return line[:bytes.IndexByte(line, ',')] }
	o := Options{Seed: 1, Expected: ExpectedPerPart(int64(len(lines)), 1), Keep: validZoned, Key: id}
	b.ResetTimer()
	var st Stats
	for i := 0; i < b.N; i++ {
		var err error
		if st, err = Run(context.Background(), opener(text), o, func([]byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(float64(st.PeakBytes)/float64(st.Unique), "set_B/id")
}
