package dedupe

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// Opener opens the audience at its start; Run calls it once per pass (and
// once more to count lines when Parts must be computed).
type Opener func(ctx context.Context) (io.ReadCloser, error)

// Options configure Run.
type Options struct {
	// Parts is how many passes Run makes, each keeping the ids of one part
	// of the hash space; at least 1. PartsFor computes it.
	Parts int
	// Seed keys the hash, so nobody can choose ids that crowd one part or
	// one run of table slots. The same Seed and Parts give the same output.
	Seed uint64
	// Keep, when set, drops the ids it answers false for (counted Skipped).
	// It is given the trimmed line; it must not keep the slice. Without Key
	// a line is only asked about in its own part's pass; with Key every
	// pass that reads the audience asks about every line, as the key (and
	// so the part) is only taken from a line Keep accepted.
	Keep func(id []byte) bool
	// Key, when set, de-duplicates lines by a key inside them rather than
	// by the whole line: for lines "id,Zone", the id, so that an id listed
	// with two zones is one target. It is given a trimmed line Keep
	// accepted and returns its key, which the hash, the parts, the Set and
	// Sorted's comparison all use; emit is given the whole line of the
	// first line of each key (in the order Run promises), and a later line
	// with the same key counts as a duplicate. The key should be a
	// sub-slice of the line (usually a prefix: the id before the comma),
	// which costs no copy; any other slice works but is copied. Key must
	// not keep either slice. nil: the key is the whole line.
	Key func(line []byte) []byte
	// Expected is how many ids one pass's set is sized for up front
	// (ExpectedPerPart); more make it grow, which costs time and memory.
	Expected int64
	// MaxLine bounds a line; longer lines are skipped. Default 64 KiB.
	MaxLine int
	// SpillDir, when set and Parts > 1, is where the first pass keeps the
	// ids (with Key, the whole lines) of the later parts (a file per part,
	// unlinked at once; about the audience's size, less the first part's
	// share, plus 9 bytes a line):
	// each later pass reads its part's file instead of the whole audience,
	// so the audience is read and hashed once. The output is the same
	// either way. A part whose file cannot be created or written is
	// re-read from the audience in its pass. "": re-read every pass.
	SpillDir string
	// Sorted says the audience's ids (with Key, its keys) never decrease
	// (Survey, or SurveyBy with the same Key, found so): it is read once
	// and each id compared with the one before, with no set; Parts, Seed
	// and SpillDir are not used. An id smaller than the one before ends Run
	// with an error.
	Sorted bool
}

// Stats tell what a Run found.
type Stats struct {
	Lines      int64 // non-empty lines read (in one pass)
	Unique     int64 // ids (with Key, lines) emitted
	Duplicates int64 // lines whose id (key) was emitted already
	Skipped    int64 // lines Keep refused or too long
	Passes     int
	PeakBytes  int64 // the most memory the dedupe set held at once
	Reads      int   // passes that read the audience (the others read their spilled part)
	Spilled    int64 // bytes written to spill files
	// SpillErr is why some part was re-read rather than read from its
	// spill file (the first such error; nil if none).
	SpillErr error
}

// Hasher returns the keyed hash Run uses for Seed: xxhash of the seed's
// 8 bytes followed by the id (one call, faster than a seeded digest for
// ids of a dozen bytes). It is not safe for concurrent use.
func Hasher(seed uint64) func([]byte) uint64 {
	buf := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+256), seed)
	return func(b []byte) uint64 {
		buf = append(buf[:8], b...)
		return xxhash.Sum64(buf)
	}
}

// part maps a hash to one of n parts by its low 32 bits (the Set's tag and
// slot come from the others).
func part(h uint64, n int) int {
	return int((h & 0xFFFFFFFF) * uint64(n) >> 32)
}

// Run makes Options.Parts passes over the audience (reading it each time,
// or once with SpillDir; once with Sorted) and calls emit once for every
// distinct id, in the order of the parts and, within a part, of the
// audience. With Options.Key it is called with the first line of every
// distinct key instead, in the same order. The slice given to emit is
// only valid during the call. A failing emit or reader ends Run with its
// error.
func Run(ctx context.Context, open Opener, o Options, emit func(id []byte) error) (Stats, error) {
	return run(ctx, open, o, emit, newSpill)
}

// run is Run with the spill files' maker given (tests make failing ones).
func run(ctx context.Context, open Opener, o Options, emit func(id []byte) error, newSpill func(dir string, parts int) *spill) (Stats, error) {
	if o.Parts < 1 {
		o.Parts = 1
	}
	o.MaxLine = cmp.Or(o.MaxLine, 64<<10)
	if o.MaxLine < 0 {
		return Stats{}, fmt.Errorf("dedupe: Options.MaxLine out of range: %d", o.MaxLine)
	}
	if o.Sorted {
		return runSorted(ctx, open, o, emit)
	}
	hash := Hasher(o.Seed)
	set := NewSet(hash, int(min(o.Expected, 1<<28)))
	defer set.Close()
	var st Stats
	blk := block{keyed: o.Key != nil}
	flush := func() error {
		if err := blk.add(set, &st, emit); err != nil {
			return err
		}
		blk.reset()
		return nil
	}
	var sp *spill
	if o.Parts > 1 && o.SpillDir != "" {
		sp = newSpill(o.SpillDir, o.Parts)
		defer sp.close()
	}
	var replayBuf []byte
	for p := 0; p < o.Parts; p++ {
		set.Reset()
		if p > 0 && sp.ok(p) {
			if replayBuf == nil {
				replayBuf = make([]byte, max(spillBuf, 8+binary.MaxVarintLen64+o.MaxLine))
			}
			err := sp.replay(p, replayBuf, func(h uint64, line []byte) error {
				var full bool
				if o.Key != nil {
					full = blk.putKeyed(h, line, o.Key(line)) // Keep accepted it in the first pass
				} else {
					full = blk.put(h, line)
				}
				if full {
					return flush()
				}
				return nil
			})
			if err == nil {
				err = ctx.Err()
			}
			if err == nil {
				err = flush()
			}
			if err != nil {
				return st, err
			}
			st.Passes++
			st.Skipped += sp.skipped[p]
			continue
		}
		skipped := int64(0)
		lines, long, err := pass(ctx, open, o, func(line []byte) error {
			key := line
			if o.Key != nil {
				// the key, so the part, comes from a line Keep accepted:
				// every pass asks, the first counts
				if o.Keep != nil && !o.Keep(line) {
					if p == 0 {
						skipped++
					}
					return nil
				}
				key = o.Key(line)
			}
			h := hash(key)
			if o.Parts > 1 {
				if q := part(h, o.Parts); q != p {
					if p == 0 && sp.ok(q) { // read once: spill the others
						if o.Key == nil && o.Keep != nil && !o.Keep(line) { // with Key, asked above
							sp.skip(q)
						} else {
							sp.put(q, h, line)
						}
					}
					return nil
				}
			}
			var full bool
			if o.Key != nil {
				full = blk.putKeyed(h, line, key)
			} else {
				// each line is checked in its own part's pass only
				if o.Keep != nil && !o.Keep(line) {
					skipped++
					return nil
				}
				full = blk.put(h, line)
			}
			if full {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if p == 0 && sp != nil && err == nil {
			sp.finish() // on an error, Run ends and close gives the files back
		}
		if err != nil {
			return st, err
		}
		st.Passes++
		st.Reads++
		st.Lines = lines
		st.Skipped += skipped
		if p == 0 {
			st.Skipped += long // too long for any part
		}
	}
	if sp != nil {
		st.Spilled = sp.bytes
		for _, err := range sp.err {
			if err != nil {
				st.SpillErr = err
				break
			}
		}
	}
	st.PeakBytes = set.PeakBytes()
	return st, nil
}

// block gathers a pass's ids (copied: the reader reuses its buffer) to add
// them to the set together (Set.AddAll). A keyed block (Options.Key)
// gathers whole lines and where each one's key is in it: the set is given
// the keys, emit the lines.
type block struct {
	keyed bool
	buf   []byte
	ends  []int     // not keyed: where each id ends in buf
	spans []keySpan // keyed: where each line and its key are in buf
	hs    []uint64  // the ids' (keys') hashes
	ids   [][]byte  // the ids (keys) given to the set
	isNew []bool
}

// keySpan is where a keyed block's line (buf[start:end]) and its key
// (buf[klo:khi], inside the line unless Key gave another slice) are.
type keySpan struct{ start, end, klo, khi int }

const blockLen = 64

// put copies id in and reports whether the block is full.
func (b *block) put(h uint64, id []byte) bool {
	b.buf = append(b.buf, id...)
	b.ends = append(b.ends, len(b.buf))
	b.hs = append(b.hs, h)
	return len(b.hs) == blockLen
}

// putKeyed copies line in, with where key (h its hash) is in it, and
// reports whether the block is full. A key that is not part of line is
// copied after it.
func (b *block) putKeyed(h uint64, line, key []byte) bool {
	s := keySpan{start: len(b.buf)}
	b.buf = append(b.buf, line...)
	s.end = len(b.buf)
	if off, ok := within(line, key); ok {
		s.klo = s.start + off
	} else {
		s.klo = len(b.buf)
		b.buf = append(b.buf, key...)
	}
	s.khi = s.klo + len(key)
	b.spans = append(b.spans, s)
	b.hs = append(b.hs, h)
	return len(b.hs) == blockLen
}

// within reports whether sub is a part of b's bytes, and at which offset.
// An empty sub is at 0.
func within(b, sub []byte) (int, bool) {
	if len(sub) == 0 {
		return 0, true
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(sub))) - uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	// unsigned: sub starting before b wraps around to a huge offset
	if len(b) == 0 || off > uintptr(len(b)) || uintptr(len(sub)) > uintptr(len(b))-off {
		return 0, false
	}
	return int(off), true
}

// add adds the block's ids (keys) to set and emits the new ones (their
// lines), in order.
func (b *block) add(set *Set, st *Stats, emit func([]byte) error) error {
	b.ids = b.ids[:0]
	if b.keyed {
		for _, s := range b.spans {
			b.ids = append(b.ids, b.buf[s.klo:s.khi])
		}
	} else {
		start := 0
		for _, end := range b.ends {
			b.ids = append(b.ids, b.buf[start:end])
			start = end
		}
	}
	b.isNew = append(b.isNew[:0], make([]bool, len(b.ids))...)
	set.AddAll(b.hs, b.ids, b.isNew)
	for i, id := range b.ids {
		if !b.isNew[i] {
			st.Duplicates++
			continue
		}
		st.Unique++
		if b.keyed {
			s := b.spans[i]
			id = b.buf[s.start:s.end]
		}
		if err := emit(id); err != nil {
			return err
		}
	}
	return nil
}

func (b *block) reset() {
	b.buf, b.ends, b.spans, b.hs = b.buf[:0], b.ends[:0], b.spans[:0], b.hs[:0]
}

// pass reads the audience once and hands every trimmed, non-empty line to
// f; it counts the lines it handed over and those too long to.
func pass(ctx context.Context, open Opener, o Options, f func([]byte) error) (lines, long int64, err error) {
	rc, err := open(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer rc.Close()
	err = eachLine(rc, o.MaxLine, func(line []byte, tooLong bool) error {
		if tooLong {
			long++
			return nil
		}
		id := trim(line)
		if len(id) == 0 {
			return nil
		}
		lines++
		return f(id)
	})
	if err == nil {
		err = ctx.Err()
	}
	return lines, long, err
}

// trim is bytes.TrimSpace, faster for the common case of ASCII ends.
func trim(b []byte) []byte {
	for len(b) > 0 && asciiSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && asciiSpace(b[0]) {
		b = b[1:]
	}
	if len(b) > 0 && (b[0] >= 0x80 || b[len(b)-1] >= 0x80) {
		return bytes.TrimSpace(b) // Unicode spaces
	}
	return b
}

func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

// eachLine calls f for every line of r (without its newline); a line over
// max bytes is reported once with tooLong and its bytes are not kept.
func eachLine(r io.Reader, maxLen int, f func(line []byte, tooLong bool) error) error {
	br := bufio.NewReaderSize(r, max(maxLen, 64<<10))
	long := false
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !long {
				long = true
				if ferr := f(nil, true); ferr != nil {
					return ferr
				}
			}
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return fmt.Errorf("dedupe: read audience: %w", err)
		}
		if long { // the end of a long line
			long = false
		} else if len(line) > 0 {
			l := line
			if l[len(l)-1] == '\n' {
				l = l[:len(l)-1]
			}
			if len(l) > maxLen {
				if ferr := f(nil, true); ferr != nil {
					return ferr
				}
			} else if ferr := f(l, false); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			return nil // EOF
		}
	}
}

// CountLines counts the lines of r (a last line without a newline counts).
func CountLines(r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	last := byte('\n')
	for {
		k, err := r.Read(buf)
		if k > 0 {
			n += int64(bytes.Count(buf[:k], []byte{'\n'}))
			last = buf[k-1]
		}
		if errors.Is(err, io.EOF) {
			if last != '\n' {
				n++
			}
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("dedupe: count audience lines: %w", err)
		}
	}
}

// Need is the memory a Set sized for every line of an audience of size
// bytes and lines lines takes when they are all distinct: each line's
// bytes (the newline's place holds the length) and a table 3/4 full.
func Need(size, lines int64) int64 {
	return size + lines*SlotBytes*4/3 + firstChunk
}

// headroom covers how unevenly a keyed hash spreads ids over parts (a few
// per mille at a million ids per part; this is far more).
const headroom = 1.1

// PartsFor is how many parts keep each pass's Set within budget bytes for
// an audience of size bytes and lines lines, whatever share of them are
// duplicates (a duplicate only leaves room unused).
func PartsFor(size, lines, budget int64) int {
	if budget <= 0 {
		return 1
	}
	need := int64(float64(Need(size, lines)) * headroom)
	return int(max(1, (need+budget-1)/budget))
}

// ExpectedPerPart is what to size one pass's Set for: its share of the
// lines, with the same headroom.
func ExpectedPerPart(lines int64, parts int) int64 {
	return int64(float64(lines)/float64(max(parts, 1))*headroom) + 16
}
