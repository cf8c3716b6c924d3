package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/dedupe"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/sendwindow"
	"github.com/campaignd/campaignd/store"
)

// planChunk is how many batches the planner writes per Redis round trip.
const planChunk = 100

// DefaultPlanMemory is the default of PlanOptions.Memory: about 2.5
// million distinct ids of a dozen bytes in one pass.
const DefaultPlanMemory = 64 << 20

// smallAudience is the size under which an audience object is planned in
// one pass without counting its lines first: its set is small anyway.
const smallAudience = 256 << 10

// plan reads the targets (inline or from the audience object), drops
// repeats, and writes batches of at most unit targets in chunks; start is
// told of every chunk, so sending begins with the first. It returns the
// status after the plan is complete, and finished=true if the campaign
// ended then (every batch sent already).
//
// The batches depend only on the targets and the campaign's stored plan
// parameters, so a re-plan after a crash writes the same batches again and
// no target is queued twice.
func (p *planner) plan(ctx context.Context, c *campaigns.Campaign, k *kind, unit int, start *starter) (campaigns.Status, bool, error) {
	b := &batcher{store: p.store, c: c, unit: unit, start: start}
	if c.LocalTime() {
		b.zones = map[string]*zoneBatch{}
	}
	switch {
	case k.unitTarget != nil:
		if err := b.add(ctx, []byte(k.unitTarget(c))); err != nil {
			return campaigns.Status{}, false, err
		}
	case c.Audience != nil:
		if err := p.planAudience(ctx, c, b); err != nil {
			return campaigns.Status{}, false, err
		}
	default:
		// Inline targets are bounded by the message size; one pass, in
		// their order (the seed only spreads the table).
		set := dedupe.NewSet(dedupe.Hasher(rand.Uint64()), len(c.Targets))
		defer set.Close()
		key := targetKey(c)
		for _, id := range c.Targets {
			if !set.Add(key([]byte(id))) { // local time: the first zone given wins
				b.dups++
				continue
			}
			if err := b.add(ctx, []byte(id)); err != nil {
				return campaigns.Status{}, false, err
			}
		}
	}
	if err := b.close(ctx); err != nil {
		return campaigns.Status{}, false, err
	}
	if b.zones != nil {
		planned := make(map[string]int64, len(b.zones))
		for name, z := range b.zones {
			planned[name] = z.targets
		}
		if err := p.store.PutZonePlan(ctx, c.ID, planned); err != nil {
			return campaigns.Status{}, false, err
		}
	}
	st, finished, err := p.store.SetPlanned(ctx, c.ID, b.targets, int64(b.batches))
	if err != nil || finished || st.Status.Final() {
		return st, finished, err
	}
	if err := start.stored(ctx, int64(b.batches), true); err != nil {
		return st, false, err
	}
	if c.LocalTime() {
		// Its tasks may all have found their zones closed before the plan
		// was complete: then it waits, scheduled, for the first opening.
		all, opens, err := p.store.Defer(ctx, c.ID, nil, nil)
		if err != nil {
			return st, false, err
		}
		if all {
			p.windowClosed(ctx, c.ID, opens)
		}
	}
	return st, false, nil
}

// planAudience feeds b every distinct valid id of c's audience object,
// within this process's plan memory: a big audience is read in several
// passes (dedupe.Run), each keeping one part of the ids.
func (p *planner) planAudience(ctx context.Context, c *campaigns.Campaign, b *batcher) error {
	if p.o.Audience == nil {
		return fmt.Errorf("plan %s: no audience store configured: %w", c.ID, asynq.SkipRetry)
	}
	size, digest, err := p.audienceInfo(ctx, c)
	if err != nil {
		return err
	}
	spillDir := p.o.SpillDir
	if p.o.SpillOff {
		spillDir = ""
	}
	// surveyed is the audience as the read that counted its lines saw it,
	// for the first pass (nil: the first pass reads the object).
	var surveyed *os.File
	defer func() {
		if surveyed != nil {
			surveyed.Close()
		}
	}()
	params, err := p.store.PlanParams(ctx, c.ID, func() (store.PlanParams, error) {
		pp := store.PlanParams{Seed: rand.Uint64(), Parts: 1, Digest: digest}
		// A plan begun by a campaignd from before plan parameters (an
		// upgrade in the middle of it) stored its batches in one pass, in
		// the audience's order: keep that order, so they are the same.
		if st, err := p.store.Status(ctx, c.ID); err != nil {
			return pp, err
		} else if st.BatchesTotal > 0 {
			return pp, nil
		}
		if size > smallAudience {
			lines, sorted, setBytes, cp, err := p.surveyAudience(ctx, c, spillDir, size, digest)
			if err != nil {
				return pp, err
			}
			surveyed = cp
			pp.Lines, pp.Sorted = lines, sorted
			if !sorted { // a sorted audience needs no set: one pass
				pp.Parts = dedupe.PartsFor(setBytes, lines, p.o.Memory)
			}
		}
		return pp, nil
	})
	if err != nil {
		return err
	}
	if params.Digest != "" && digest != params.Digest {
		return &campaignFailure{field: "audience", message: fmt.Sprintf("object %s/%s changed after planning began", c.Audience.Bucket, c.Audience.Object)}
	}
	// The set this plan may hold: its share of the lines (or, uncounted, a
	// small object's), and never more than the process's whole budget.
	need := dedupe.Need(size, max(params.Lines, size/2))
	if params.Lines > 0 {
		need = dedupe.Need(size/int64(params.Parts), dedupe.ExpectedPerPart(params.Lines, params.Parts))
	}
	// A sorted audience needs no set, and does not queue for plan memory
	// (a semaphore queues even a weight of 0 behind waiting plans).
	if !params.Sorted {
		weight := min(need, p.o.Memory)
		if err := p.mem.Acquire(ctx, weight); err != nil {
			return fmt.Errorf("plan %s: wait for plan memory: %w", c.ID, err)
		}
		defer p.mem.Release(weight)
	}

	open := func(ctx context.Context) (io.ReadCloser, error) {
		if f := surveyed; f != nil { // read whole and checked already
			surveyed = nil
			return f, nil
		}
		rc, err := p.openAudience(ctx, c)
		if err != nil {
			return nil, err
		}
		if d, ok := rc.(interface{ Digest() string }); ok && params.Digest != "" && d.Digest() != params.Digest {
			rc.Close()
			return nil, &campaignFailure{field: "audience", message: fmt.Sprintf("object %s/%s changed after planning began", c.Audience.Bucket, c.Audience.Object)}
		}
		return rc, nil
	}
	var expected int64
	if params.Lines > 0 {
		expected = dedupe.ExpectedPerPart(params.Lines, params.Parts)
	}
	stats, err := dedupe.Run(ctx, open, dedupe.Options{
		Parts: params.Parts, Seed: params.Seed, Expected: expected, SpillDir: spillDir, Sorted: params.Sorted,
		Keep: targetFilter(c, p.zones), Key: dedupeKey(c),
	}, func(id []byte) error { return b.add(ctx, id) })
	if err != nil {
		var cf *campaignFailure
		if errors.As(err, &cf) {
			return err
		}
		return fmt.Errorf("plan %s: audience %s/%s: %w", c.ID, c.Audience.Bucket, c.Audience.Object, err)
	}
	b.dups, b.invalid = stats.Duplicates, stats.Skipped
	if stats.SpillErr != nil {
		p.log.Warn().Err(stats.SpillErr).Str("campaign", c.ID).Str("dir", spillDir).
			Msg("some parts of the audience were read again instead of from a spill file (worker.plan_spill_dir)")
	}
	p.log.Info().Str("campaign", c.ID).Int64("lines", stats.Lines).Int64("unique", stats.Unique).Int64("duplicates", stats.Duplicates).
		Int64("skipped", stats.Skipped).Bool("sorted", params.Sorted).Int("passes", stats.Passes).Int("audience_reads", stats.Reads).Int64("spilled_bytes", stats.Spilled).
		Int64("set_peak_bytes", stats.PeakBytes).Msg("audience read")
	return nil
}

// audienceUnavailable reports an audience that no retry will bring: it
// does not exist, or campaignd may not read it.
func audienceUnavailable(err error) bool {
	return errors.Is(err, campaigns.ErrAudienceNotFound) || errors.Is(err, campaigns.ErrAudienceDenied)
}

// openAudience opens c's audience object at its start; a missing one fails
// the campaign.
func (p *planner) openAudience(ctx context.Context, c *campaigns.Campaign) (io.ReadCloser, error) {
	rc, err := p.o.Audience.Open(ctx, c.Audience.Bucket, c.Audience.Object)
	if audienceUnavailable(err) {
		return nil, &campaignFailure{field: "audience", message: strings.TrimPrefix(err.Error(), "intake: ")}
	}
	if err != nil {
		return nil, fmt.Errorf("plan %s: open audience %s/%s: %w", c.ID, c.Audience.Bucket, c.Audience.Object, err)
	}
	return rc, nil
}

// audienceInfo is the size and digest of c's audience object (0 and "" if
// its store does not tell), from the store's Stat if it has one (no read).
func (p *planner) audienceInfo(ctx context.Context, c *campaigns.Campaign) (int64, string, error) {
	if st, ok := p.o.Audience.(interface {
		Stat(ctx context.Context, bucket, object string) (int64, string, error)
	}); ok {
		size, digest, err := st.Stat(ctx, c.Audience.Bucket, c.Audience.Object)
		if audienceUnavailable(err) {
			return 0, "", &campaignFailure{field: "audience", message: strings.TrimPrefix(err.Error(), "intake: ")}
		}
		if err != nil {
			return 0, "", fmt.Errorf("plan %s: %w", c.ID, err)
		}
		return size, digest, nil
	}
	rc, err := p.openAudience(ctx, c)
	if err != nil {
		return 0, "", err
	}
	defer rc.Close()
	var size int64
	var digest string
	if sz, ok := rc.(interface{ Size() int64 }); ok {
		size = sz.Size()
	}
	if d, ok := rc.(interface{ Digest() string }); ok {
		digest = d.Digest()
	}
	return size, digest, nil
}

// surveyAudience counts the lines of c's audience object and tells
// whether its valid ids never decrease (dedupe.Survey: one read, no
// memory kept). With a spill directory it also copies what it reads to an
// unlinked file there and returns it, at its start, when the whole object
// was read (size bytes) and its digest is the one planning began with: the plan's
// first pass reads that file instead of the object a second time. A copy
// that cannot be made or written is dropped (the pass reads the object).
// setBytes is what the lines' ids take in a set: size, or for a
// local-time audience the bytes of its ids alone (the set keeps no zone).
func (p *planner) surveyAudience(ctx context.Context, c *campaigns.Campaign, spillDir string, size int64, digest string) (lines int64, sorted bool, setBytes int64, f *os.File, err error) {
	rc, err := p.openAudience(ctx, c)
	if err != nil {
		return 0, false, 0, nil, err
	}
	defer rc.Close()
	var cp *fileCopy
	r := io.Reader(rc)
	if spillDir != "" {
		if f, err := os.CreateTemp(spillDir, "campaignd-audience-*"); err == nil {
			_ = os.Remove(f.Name()) // unlinked: the open file lives until it is closed
			cp = &fileCopy{f: f}
			r = io.TeeReader(rc, cp)
		}
	}
	setBytes = size
	var ids *idBytes
	if c.LocalTime() {
		ids = newIDBytes()
		r = io.TeeReader(r, ids)
	}
	n, sorted, err := dedupe.SurveyBy(r, targetFilter(c, p.zones), dedupeKey(c), 0)
	if err != nil {
		cp.drop()
		return 0, false, 0, nil, fmt.Errorf("plan %s: %w", c.ID, err)
	}
	if ids != nil {
		setBytes = ids.Total()
	}
	if d, ok := rc.(interface{ Digest() string }); ok && digest != "" && d.Digest() != digest {
		cp.drop() // replaced since planning began: the pass's own read tells
		return n, sorted, setBytes, nil, nil
	}
	if cp != nil && cp.n != size {
		cp.drop() // not the whole object: never a pass over part of it
		return n, sorted, setBytes, nil, nil
	}
	return n, sorted, setBytes, cp.rewound(), nil
}

// idBytes counts, of the bytes written to it (an audience as it is
// read), what the lines' ids take without their zones ("u1,Asia/Tokyo"
// counts "u1" and its newline): a local-time audience's set holds ids
// alone, which sizes the plan's passes. Lines are counted whole without
// a comma (invalid ones too: the estimate errs high).
type idBytes struct {
	cur   int64 // bytes of the line so far
	comma int64 // where its last comma is; -1: none yet
	total int64
}

func newIDBytes() *idBytes { return &idBytes{comma: -1} }

func (w *idBytes) Write(p []byte) (int, error) {
	n := len(p)
	for {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if j := bytes.LastIndexByte(seg, ','); j >= 0 {
			w.comma = w.cur + int64(j)
		}
		w.cur += int64(len(seg))
		if i < 0 {
			return n, nil
		}
		w.endLine()
		p = p[i+1:]
	}
}

func (w *idBytes) endLine() {
	id := w.cur
	if w.comma >= 0 {
		id = w.comma
	}
	w.total += id + 1
	w.cur, w.comma = 0, -1
}

// Total is the count, the last line (without a newline) included.
func (w *idBytes) Total() int64 {
	if w.cur > 0 {
		w.endLine()
	}
	return w.total
}

// fileCopy is an io.Writer into a file that never fails its caller: the
// first error is kept, and the copy is then of no use.
type fileCopy struct {
	f   *os.File
	n   int64 // bytes written
	err error
}

func (w *fileCopy) Write(p []byte) (int, error) {
	if w.err == nil {
		var n int
		n, w.err = w.f.Write(p)
		w.n += int64(n)
	}
	return len(p), nil
}

// rewound is the copy's file at its start, or nil (the file closed) if a
// write or the seek failed. Safe on a nil copy.
func (w *fileCopy) rewound() *os.File {
	if w == nil {
		return nil
	}
	if w.err == nil {
		_, w.err = w.f.Seek(0, io.SeekStart)
	}
	if w.err != nil {
		w.f.Close()
		return nil
	}
	return w.f
}

// drop closes the copy's file. Safe on a nil copy.
func (w *fileCopy) drop() {
	if w != nil {
		w.f.Close()
	}
}

// validTarget is the plan's filter: lines that are not valid target ids
// are left out (counted invalid).
func validTarget(id []byte) bool { return provider.ValidTargetID(string(id)) }

// targetFilter is the plan's filter for c's audience lines: validTarget,
// or for a local-time campaign a valid id with, after a comma, a zone
// zones knows (an unknown zone makes the line invalid).
func targetFilter(c *campaigns.Campaign, zones *sendwindow.Zones) func(line []byte) bool {
	if !c.LocalTime() {
		return validTarget
	}
	return func(line []byte) bool {
		id, zone, given := campaigns.SplitZoneBytes(line)
		if !provider.ValidTargetID(string(id)) {
			return false
		}
		if !given {
			return true
		}
		return zones.Known(zone)
	}
}

// targetKey is what de-duplicates c's targets: the whole line, or for a
// local-time campaign its id (the same id with two zones is one target,
// the first line wins).
func targetKey(c *campaigns.Campaign) func(line []byte) []byte {
	if !c.LocalTime() {
		return func(line []byte) []byte { return line }
	}
	return func(line []byte) []byte {
		id, _, _ := campaigns.SplitZoneBytes(line)
		return id
	}
}

// dedupeKey is targetKey for dedupe.Options.Key (nil: the whole line).
func dedupeKey(c *campaigns.Campaign) func(line []byte) []byte {
	if !c.LocalTime() {
		return nil
	}
	return targetKey(c)
}

// batcher cuts the plan's distinct targets into batches of unit, each kept
// as its targets joined by "\n" (the stored form), and stores them
// planChunk at a time.
type batcher struct {
	store *store.Store
	c     *campaigns.Campaign
	unit  int
	start *starter

	joined  []byte   // the batches not stored yet, one after another; the last one is being filled
	inBuf   int      // targets in the batch being filled
	from    int      // where in joined it starts
	chunk   [][]byte // the whole batches not stored yet (slices of joined)
	batches int      // batches cut so far
	targets int64
	dups    int64
	invalid int64

	// zones, for a local-time campaign, holds each zone's batch being
	// filled: a batch holds one zone's targets (its first line names the
	// zone, store.AppendZoneLine), so that each is sent in its own window.
	// At most one partial batch per zone is kept: a few hundred zones of
	// at most unit ids each.
	zones map[string]*zoneBatch
}

// zoneBatch is one zone's batch being filled.
type zoneBatch struct {
	joined  []byte // the zone line, then the targets so far
	n       int
	targets int64 // the zone's targets in all
}

func (b *batcher) add(ctx context.Context, id []byte) error {
	if b.zones != nil {
		return b.addZoned(ctx, id)
	}
	if b.inBuf > 0 {
		b.joined = append(b.joined, '\n')
	}
	b.joined = append(b.joined, id...)
	b.inBuf++
	b.targets++
	if b.inBuf < b.unit {
		return nil
	}
	b.cut()
	if len(b.chunk) == planChunk {
		return b.flush(ctx)
	}
	return nil
}

func (b *batcher) cut() {
	b.chunk = append(b.chunk, b.joined[b.from:len(b.joined):len(b.joined)])
	b.from = len(b.joined)
	b.inBuf = 0
	b.batches++
}

func (b *batcher) flush(ctx context.Context) error {
	so := store.PlanSoFar{Targets: b.targets, Duplicates: b.dups, Invalid: b.invalid}
	if err := b.store.PutJoinedBatches(ctx, b.c.ID, b.batches-len(b.chunk), b.chunk, so); err != nil {
		return err
	}
	b.chunk = b.chunk[:0]
	b.joined, b.from = b.joined[:0], 0 // written: the next chunk reuses the bytes
	return b.start.stored(ctx, int64(b.batches), false)
}

// addZoned adds a local-time target, "id" or "id,Zone", to its zone's
// batch (a target without a zone is in the window's zone), and cuts that
// batch when it is full.
func (b *batcher) addZoned(ctx context.Context, line []byte) error {
	id, zone, given := campaigns.SplitZoneBytes(line)
	name := b.c.SendWindow.Timezone
	if given {
		name = string(zone) // no allocation for a map read
	}
	z := b.zones[name]
	if z == nil {
		z = &zoneBatch{joined: store.AppendZoneLine(nil, name)}
		b.zones[name] = z
	}
	if z.n > 0 {
		z.joined = append(z.joined, '\n')
	}
	z.joined = append(z.joined, id...)
	z.n++
	z.targets++
	b.targets++
	if z.n < b.unit {
		return nil
	}
	b.cutZone(name, z)
	if len(b.chunk) == planChunk {
		return b.flush(ctx)
	}
	return nil
}

// cutZone moves zone name's batch into the chunk to store.
func (b *batcher) cutZone(name string, z *zoneBatch) {
	b.joined = append(b.joined, z.joined...)
	b.inBuf = z.n
	b.cut()
	z.joined, z.n = store.AppendZoneLine(z.joined[:0], name), 0
}

// close stores the last, partial batch (for a local-time campaign, each
// zone's, in the zones' order: a plan made again cuts the same) and the
// final counts (even with no batch left: the duplicates are known only
// now), and marks the campaign running even with no batch at all.
func (b *batcher) close(ctx context.Context) error {
	if b.inBuf > 0 {
		b.cut()
	}
	for _, name := range slices.Sorted(maps.Keys(b.zones)) {
		if z := b.zones[name]; z.n > 0 {
			b.cutZone(name, z)
			if len(b.chunk) == planChunk {
				if err := b.flush(ctx); err != nil {
					return err
				}
			}
		}
	}
	return b.flush(ctx)
}

// AudienceCount is an audience object counted as a plan reads it.
type AudienceCount struct {
	dedupe.Stats
	// Zones, for a local-time campaign, is how many of the distinct
	// targets each zone has (a target without a zone is in the window's);
	// nil for others.
	Zones map[string]int64
}

// CountAudience counts the distinct valid ids of campaign c's audience
// object as a plan would read it (the same rule for a valid line, the
// same de-duplication; for a local-time campaign, by id with each zone
// counted), storing nothing: one survey read (a sorted audience needs no
// set), then as many passes as memory bytes of sets need. open gives the
// object's bytes afresh at each call; size is its length.
func CountAudience(ctx context.Context, c *campaigns.Campaign, open dedupe.Opener, size, memory int64) (AudienceCount, error) {
	var zones sendwindow.Zones
	keep, key := targetFilter(c, &zones), dedupeKey(c)
	rc, err := open(ctx)
	if err != nil {
		return AudienceCount{}, err
	}
	r, setBytes := io.Reader(rc), size
	var ids *idBytes
	if c.LocalTime() {
		ids = newIDBytes()
		r = io.TeeReader(rc, ids)
	}
	lines, sorted, err := dedupe.SurveyBy(r, keep, key, 0)
	rc.Close()
	if err != nil {
		return AudienceCount{}, fmt.Errorf("count audience: %w", err)
	}
	if ids != nil {
		setBytes = ids.Total()
	}
	parts := 1
	if !sorted {
		parts = dedupe.PartsFor(setBytes, lines, memory)
	}
	var out AudienceCount
	emit := func([]byte) error { return nil }
	if c.LocalTime() {
		out.Zones = map[string]int64{}
		emit = func(line []byte) error {
			if _, zone, given := campaigns.SplitZoneBytes(line); given {
				out.Zones[string(zone)]++
			} else {
				out.Zones[c.SendWindow.Timezone]++
			}
			return nil
		}
	}
	out.Stats, err = dedupe.Run(ctx, open, dedupe.Options{Parts: parts, Seed: rand.Uint64(), Sorted: sorted,
		Expected: dedupe.ExpectedPerPart(lines, parts), Keep: keep, Key: key}, emit)
	return out, err
}
