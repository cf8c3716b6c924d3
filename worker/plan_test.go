package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/store"
)

// memAudience is an AudienceSource over audiences held in memory (the
// daemon's end-to-end tests and the benchmark read real NATS objects). A
// reader of object "name" fails after failAfter bytes on its open number
// failOn (counting from 1), like a connection lost mid-plan.
type memAudience struct {
	mu        sync.Mutex
	objects   map[string][]byte
	opens     int
	failOn    int
	failAfter int
	cutOn     int           // this open's reader ends at failAfter, with no error (a short read that says nothing)
	slow      time.Duration // a pause before each read of 64 KiB or less
	perObject map[string]int
	passes    int // pass readers open now: an object's third open and later (after the info and the count)
	maxPasses int
}

func (m *memAudience) Open(_ context.Context, _, object string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.objects[object]
	if !ok {
		return nil, fmt.Errorf("audience object %q does not exist: %w", object, campaigns.ErrAudienceNotFound)
	}
	m.opens++
	if m.perObject == nil {
		m.perObject = map[string]int{}
	}
	m.perObject[object]++
	pass := m.perObject[object] >= 3
	if pass {
		m.passes++
		m.maxPasses = max(m.maxPasses, m.passes)
	}
	var r io.Reader = bytes.NewReader(data)
	if m.opens == m.failOn {
		r = io.MultiReader(bytes.NewReader(data[:m.failAfter]), failingReader{})
	}
	if m.opens == m.cutOn {
		r = bytes.NewReader(data[:m.failAfter])
	}
	if m.slow > 0 {
		r = slowReader{r, m.slow}
	}
	sum := sha256.Sum256(data)
	return &memObject{Reader: r, size: int64(len(data)), digest: "SHA-256=" + hex.EncodeToString(sum[:]), from: m, pass: pass}, nil
}

type slowReader struct {
	r     io.Reader
	pause time.Duration
}

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause)
	return s.r.Read(p[:min(len(p), 64<<10)])
}

func (m *memAudience) put(name string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.objects == nil {
		m.objects = map[string][]byte{}
	}
	m.objects[name] = data
}

type memObject struct {
	io.Reader
	size   int64
	digest string
	from   *memAudience
	pass   bool
	closed bool
}

func (o *memObject) Close() error {
	o.from.mu.Lock()
	defer o.from.mu.Unlock()
	if !o.closed && o.pass {
		o.from.passes--
	}
	o.closed = true
	return nil
}
func (o *memObject) Size() int64    { return o.size }
func (o *memObject) Digest() string { return o.digest }

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, fmt.Errorf("connection reset by peer") }

// dupAudience is lines ids: unique distinct ones and repeats of random
// ones, shuffled so repeats land in other chunks (10,000 ids) and parts.
func dupAudience(unique, lines int) (text []byte, uniq []string) {
	r := rand.New(rand.NewPCG(7, 8))
	all := make([]string, 0, lines)
	for i := 0; i < unique; i++ {
		all = append(all, fmt.Sprintf("aud%06d", i))
	}
	uniq = append(uniq, all...)
	for len(all) < lines {
		all = append(all, all[r.IntN(unique)])
	}
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return []byte(strings.Join(all, "\n") + "\n"), uniq
}

func assertEachOnce(t *testing.T, e *env, uniq []string) {
	t.Helper()
	calls, counts := e.prov.snapshot()
	for _, c := range calls {
		if len(c) > 100 {
			t.Fatalf("a call of %d targets", len(c))
		}
	}
	for _, id := range uniq {
		if counts[id] != 1 {
			t.Fatalf("%s pushed %d times", id, counts[id])
		}
	}
	if len(counts) != len(uniq) {
		t.Fatalf("%d ids pushed, want %d", len(counts), len(uniq))
	}
}

// TestAudienceRepeatsAcrossChunksAndPassesAreSentOnce: an audience read in
// several passes (a small PlanMemory), whose repeats fall in other chunks
// and other parts, sends each distinct id once and reports the repeats,
// whether the later parts are spilled to files (the audience read once)
// or read again.
func TestAudienceRepeatsAcrossChunksAndPassesAreSentOnce(t *testing.T) {
	t.Parallel()
	for _, spillOff := range []bool{false, true} {
		t.Run(fmt.Sprintf("spill off %v", spillOff), func(t *testing.T) {
			t.Parallel()
			repeatsSentOnce(t, spillOff)
		})
	}
}

func repeatsSentOnce(t *testing.T, spillOff bool) {
	aud := &memAudience{}
	text, uniq := dupAudience(27_000, 33_000)
	aud.put("seg", text)
	spillDir := t.TempDir()
	e := setup(t, Options{Provider: &fakeProvider{}, Plan: PlanOptions{Audience: aud, Memory: 256 << 10, SpillDir: spillDir, SpillOff: spillOff}})
	e.submit(t, &campaigns.Campaign{ID: "aud", Kind: campaigns.KindBatchPush, PushMessage: msg(), Audience: &campaigns.Audience{Bucket: "b", Object: "seg"}}, time.Now())
	st := e.waitFinal(t, "aud", 60*time.Second)
	if st.Status != campaigns.StateCompleted || st.Sent != 27_000 || st.TargetsTotal != 27_000 || st.Duplicates != 6_000 || st.BatchesTotal != 270 {
		t.Fatalf("status %+v", st)
	}
	assertEachOnce(t, e, uniq)
	p, err := e.store.PlanParams(context.Background(), "aud", func() (store.PlanParams, error) {
		t.Fatal("plan parameters not stored")
		return store.PlanParams{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Parts < 3 || p.Lines != 33_000 || !strings.HasPrefix(p.Digest, "SHA-256=") {
		t.Fatalf("plan parameters %+v: want several parts for 33,000 lines in 256 KiB", p)
	}
	// size and digest, count, then one open per part (or none: the first
	// pass reads the count's copy, the later ones their spill files)
	reads := p.Parts
	if !spillOff {
		reads = 0
	}
	if aud.opens != 2+reads {
		t.Fatalf("%d opens for %d parts (spill off %v)", aud.opens, p.Parts, spillOff)
	}
	if left, _ := os.ReadDir(spillDir); len(left) != 0 {
		t.Fatalf("%d spill files left behind", len(left))
	}
}

// TestReplanAfterAFailureMidPlanSendsEachOnce: the audience's reader
// fails midway, and the plan task's retry plans again, so that nothing
// goes twice. Without spill files the second pass's read fails, after
// batches were stored and sent: the retry plans with the stored
// parameters, so the batches already sent are the same batches. With
// them the object is read only to count its lines (the passes read that
// read's copy and their spill files), so that read fails.
func TestReplanAfterAFailureMidPlanSendsEachOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		spillOff bool
		failOn   int // open 1 reads size and digest, 2 counts, 3 is pass 1 (without spill files)
	}{
		{"spilled, the count fails", false, 2},
		{"read again, the second pass fails", true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			text, uniq := dupAudience(30_000, 36_000)
			aud := &memAudience{failOn: tc.failOn, failAfter: len(text) / 2}
			aud.put("seg", text)
			e := setup(t, Options{Provider: &fakeProvider{}, Plan: PlanOptions{Audience: aud, Memory: 256 << 10, SpillDir: t.TempDir(), SpillOff: tc.spillOff}})
			e.submit(t, &campaigns.Campaign{ID: "re", Kind: campaigns.KindBatchPush, PushMessage: msg(), Audience: &campaigns.Audience{Bucket: "b", Object: "seg"}}, time.Now())
			st := e.waitFinal(t, "re", 60*time.Second)
			if st.Status != campaigns.StateCompleted || st.Sent != 30_000 || st.TargetsTotal != 30_000 || st.Duplicates != 6_000 {
				t.Fatalf("status %+v", st)
			}
			assertEachOnce(t, e, uniq)
			if aud.opens <= tc.failOn {
				t.Fatalf("only %d opens: the plan did not fail and run again", aud.opens)
			}
		})
	}
}

// TestSortedAudienceIsPlannedWithoutASet: an audience whose ids never
// decrease (an export ordered by id, repeats next to their id, invalid
// lines among them) is found sorted when its lines are counted and planned
// in one pass without a set, even where plan_memory would ask for several;
// its reader failing mid-pass, the re-plan writes the same batches and
// each id goes once.
func TestSortedAudienceIsPlannedWithoutASet(t *testing.T) {
	t.Parallel()
	text, _ := dupAudience(30_000, 36_000)
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
	for i := 0; i < len(lines); i += 1000 {
		lines[i] = "bad id " + lines[i] // not a valid target id: left out
	}
	slices.Sort(lines) // the whole file, invalid lines included, as sort(1) would
	sorted := []byte(strings.Join(lines, "\n") + "\n")
	aud := &memAudience{failOn: 3, failAfter: len(sorted) / 2} // open 3 is the pass
	aud.put("seg", sorted)
	// no spill files: the pass reads the object (not the count's copy), and its reader fails
	e := setup(t, Options{Provider: &fakeProvider{}, Plan: PlanOptions{Audience: aud, Memory: 256 << 10, SpillOff: true}})
	e.submit(t, &campaigns.Campaign{ID: "sorted", Kind: campaigns.KindBatchPush, PushMessage: msg(), Audience: &campaigns.Audience{Bucket: "b", Object: "seg"}}, time.Now())
	st := e.waitFinal(t, "sorted", 60*time.Second)
	var want []string
	seen := map[string]bool{}
	for _, l := range lines {
		if !strings.HasPrefix(l, "bad id ") && !seen[l] {
			seen[l] = true
			want = append(want, l)
		}
	}
	if st.Status != campaigns.StateCompleted || st.Sent != int64(len(want)) || st.Invalid != 36 || st.Duplicates != int64(36_000-36-len(want)) {
		t.Fatalf("status %+v; want %d sent, 36 invalid", st, len(want))
	}
	assertEachOnce(t, e, want)
	p, err := e.store.PlanParams(context.Background(), "sorted", func() (store.PlanParams, error) { return store.PlanParams{}, fmt.Errorf("not stored") })
	if err != nil || !p.Sorted || p.Parts != 1 || p.Lines != 36_000 {
		t.Fatalf("plan parameters %+v, %v: want sorted, one pass", p, err)
	}
	if aud.opens <= 3 {
		t.Fatalf("only %d opens: the plan did not fail and run again", aud.opens)
	}
}

// TestSortedAudienceTakesNoPlanMemory: with all of plan_memory held by
// another plan, a sorted audience (which needs no set) is still planned
// and sent; one in random order waits.
func TestSortedAudienceTakesNoPlanMemory(t *testing.T) {
	t.Parallel()
	text, _ := dupAudience(27_000, 30_000) // over 256 KiB: surveyed
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
	slices.Sort(lines)
	aud := &memAudience{}
	aud.put("sorted", []byte(strings.Join(lines, "\n")+"\n"))
	aud.put("random", text)
	e := setup(t, Options{Provider: &fakeProvider{}, Plan: PlanOptions{Audience: aud, Memory: 256 << 10, SpillDir: t.TempDir()}})
	ctx := context.Background()
	if err := e.svc.planner.mem.Acquire(ctx, 256<<10); err != nil { // another plan holds it all
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			e.svc.planner.mem.Release(256 << 10)
		}
	}
	t.Cleanup(release)
	e.submit(t, &campaigns.Campaign{ID: "random", Kind: campaigns.KindBatchPush, PushMessage: msg(), Audience: &campaigns.Audience{Bucket: "b", Object: "random"}}, time.Now())
	e.submit(t, &campaigns.Campaign{ID: "sorted", Kind: campaigns.KindBatchPush, PushMessage: msg(), Audience: &campaigns.Audience{Bucket: "b", Object: "sorted"}}, time.Now())
	if st := e.waitFinal(t, "sorted", 30*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 27_000 {
		t.Fatalf("sorted: status %+v", st)
	}
	if st, err := e.store.Status(ctx, "random"); err != nil || st.TargetsTotal != 0 {
		t.Fatalf("the random-order plan went on without plan memory: %+v, %v", st, err)
	}
	release()
	if st := e.waitFinal(t, "random", 30*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 27_000 {
		t.Fatalf("random: status %+v", st)
	}
}

// TestChangedAudienceFailsTheCampaign: an object replaced after planning
// began fails the campaign naming the audience, rather than sending a mix.
func TestChangedAudienceFailsTheCampaign(t *testing.T) {
	t.Parallel()
	text, _ := dupAudience(30_000, 33_000)
	aud := &memAudience{failOn: 4, failAfter: len(text) / 2}
	aud.put("seg", text)
	e := setup(t, Options{Provider: &fakeProvider{answer: func(int, []string) ([]TargetResult, error) {
		aud.put("seg", append([]byte("new\n"), text...)) // replaced while the first batches go out
		return nil, nil
	}}, Plan: PlanOptions{Audience: aud, Memory: 256 << 10, SpillOff: true}}) // later passes read the object again
	e.submit(t, &campaigns.Campaign{ID: "chg", Kind: campaigns.KindBatchPush, PushMessage: msg(), Audience: &campaigns.Audience{Bucket: "b", Object: "seg"}}, time.Now())
	st := e.waitFinal(t, "chg", 60*time.Second)
	if st.Status != campaigns.StateFailed && st.Status != campaigns.StatePartiallyFailed {
		t.Fatalf("status %+v", st)
	}
	if len(st.Errors) == 0 || st.Errors[0].Field != "audience" || !strings.Contains(st.Errors[0].Message, "changed") {
		t.Fatalf("errors %+v", st.Errors)
	}
}

// TestPlanBegunBeforePlanParametersKeepsOnePass: a campaign whose plan
// was begun by a campaignd without plan parameters (batches stored, none
// recorded) is planned again in one pass, the order those batches have,
// even where plan_memory would now ask for several.
func TestPlanBegunBeforePlanParametersKeepsOnePass(t *testing.T) {
	t.Parallel()
	text, _ := dupAudience(30_000, 33_000)
	aud := &memAudience{}
	aud.put("seg", text)
	e := setup(t, Options{Provider: &fakeProvider{}, Plan: PlanOptions{Audience: aud, Memory: 256 << 10}})
	ctx := context.Background()
	c := &campaigns.Campaign{ID: "old", Kind: campaigns.KindBatchPush, PushMessage: msg(), Audience: &campaigns.Audience{Bucket: "b", Object: "seg"}}
	c.Normalize()
	if _, _, err := e.store.Create(ctx, c, time.Now()); err != nil { // no plan task: the test plans
		t.Fatal(err)
	}
	first := strings.SplitN(string(text), "\n", 101)[:100]
	if err := e.store.PutBatches(ctx, "old", 0, [][]string{first}, 100); err != nil {
		t.Fatal(err)
	}
	b := &batcher{store: e.store, c: c, unit: 100, start: &starter{l: e.svc.ledger, q: e.svc.planner.q, c: c}}
	if err := e.svc.planner.planAudience(ctx, c, b); err != nil {
		t.Fatal(err)
	}
	p, err := e.store.PlanParams(ctx, "old", func() (store.PlanParams, error) { return store.PlanParams{}, fmt.Errorf("not stored") })
	if err != nil || p.Parts != 1 {
		t.Fatalf("plan parameters %+v, %v: want one pass", p, err)
	}
	if b.targets != 30_000 || b.batches != 300 {
		t.Fatalf("planned %d targets in %d batches", b.targets, b.batches)
	}
}

// TestConcurrentPlansShareThePlanMemory: three big audiences planned at
// once, each needing all of plan_memory for its passes, make their passes
// one plan at a time (counting lines needs no memory and may overlap),
// and each sends its ids once.
func TestConcurrentPlansShareThePlanMemory(t *testing.T) {
	t.Parallel()
	aud := &memAudience{slow: 2 * time.Millisecond}
	var uniqs [][]string
	for i := range 3 {
		text, uniq := dupAudience(27_000, 30_000) // over 256 KiB: counted, then passes
		prefixed := strings.ReplaceAll(string(text), "aud", fmt.Sprintf("c%d-", i))
		for j := range uniq {
			uniq[j] = strings.Replace(uniq[j], "aud", fmt.Sprintf("c%d-", i), 1)
		}
		aud.put(fmt.Sprint("seg", i), []byte(prefixed))
		uniqs = append(uniqs, uniq)
	}
	// no spill files: every pass opens the object, which counts the passes
	e := setup(t, Options{Provider: &fakeProvider{}, Concurrency: 10, Plan: PlanOptions{Audience: aud, Memory: 256 << 10, SpillOff: true}})
	for i := range 3 {
		e.submit(t, &campaigns.Campaign{ID: fmt.Sprint("cp", i), Kind: campaigns.KindBatchPush, PushMessage: msg(),
			Audience: &campaigns.Audience{Bucket: "b", Object: fmt.Sprint("seg", i)}}, time.Now())
	}
	for i := range 3 {
		if st := e.waitFinal(t, fmt.Sprint("cp", i), 60*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 27_000 {
			t.Fatalf("status %+v", st)
		}
	}
	var all []string
	for _, u := range uniqs {
		all = append(all, u...)
	}
	assertEachOnce(t, e, all)
	aud.mu.Lock()
	defer aud.mu.Unlock()
	if aud.maxPasses != 1 {
		t.Fatalf("%d plans made passes at once: they did not wait for plan memory", aud.maxPasses)
	}
}

// TestFileCopy: the count's copy of an audience never fails the count; a
// copy whose writes failed (a full disk) is dropped, one that was written
// is read back from its start.
func TestFileCopy(t *testing.T) {
	t.Parallel()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cp := &fileCopy{f: full}
	if n, err := cp.Write([]byte("a\nb\n")); n != 4 || err != nil {
		t.Fatalf("write to a full disk: %d, %v: want 4, nil (the count goes on)", n, err)
	}
	if cp.err == nil || cp.rewound() != nil {
		t.Fatalf("a copy that could not be written was kept (err %v)", cp.err)
	}

	f, err := os.CreateTemp(t.TempDir(), "copy")
	if err != nil {
		t.Fatal(err)
	}
	cp = &fileCopy{f: f}
	for _, part := range []string{"a\n", "b\nc", "\n"} {
		_, _ = cp.Write([]byte(part))
	}
	if cp.n != 6 {
		t.Fatalf("copy counted %d bytes, want 6 (compared with the object's size)", cp.n)
	}
	r := cp.rewound()
	if r == nil {
		t.Fatalf("a written copy was dropped: %v", cp.err)
	}
	defer r.Close()
	if got, err := io.ReadAll(r); err != nil || string(got) != "a\nb\nc\n" {
		t.Fatalf("read back %q, %v", got, err)
	}

	var none *fileCopy // no spill directory: no copy
	if none.rewound() != nil {
		t.Fatal("a nil copy gave a file")
	}
	none.drop()
}

// TestShortCountLeavesNoCopy: the read that counts the lines ends early
// without an error (a reader that stops short of the object's size); its
// copy is not used, and the first pass reads the whole object.
func TestShortCountLeavesNoCopy(t *testing.T) {
	t.Parallel()
	text, uniq := dupAudience(27_000, 30_000) // over 256 KiB: counted
	cut := bytes.LastIndexByte(text[:len(text)-len(text)/50], '\n') + 1
	aud := &memAudience{cutOn: 2, failAfter: cut} // open 2 is the count
	aud.put("seg", text)
	e := setup(t, Options{Provider: &fakeProvider{}, Plan: PlanOptions{Audience: aud, SpillDir: t.TempDir()}})
	e.submit(t, &campaigns.Campaign{ID: "short", Kind: campaigns.KindBatchPush, PushMessage: msg(), Audience: &campaigns.Audience{Bucket: "b", Object: "seg"}}, time.Now())
	if st := e.waitFinal(t, "short", 60*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 27_000 {
		t.Fatalf("status %+v", st)
	}
	assertEachOnce(t, e, uniq)
	if aud.opens != 3 {
		t.Fatalf("%d opens: want size and digest, the count, and the pass reading the object", aud.opens)
	}
}
