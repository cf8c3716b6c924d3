// Package dedupe drops repeated target ids from audiences of any size,
// exactly and in bounded memory.
//
// A Set keeps the ids it has seen in a compact arena (a length and the
// bytes, no Go string per id) found through an open-addressing table of
// 8-byte slots; a hit on a slot's hash tag is always confirmed by comparing
// the bytes, so no id is ever dropped because of a hash collision. Run
// reads an audience in one or more passes: pass p keeps only the ids whose
// keyed hash falls in part p of Parts, so each pass's Set holds about
// 1/Parts of the unique ids; with a spill directory the audience is read
// once and each later part comes from a file of its own. The output (which
// ids, in which order) depends only on the audience, Parts and Seed: a
// re-plan with the same three writes the same batches again. An audience
// whose ids never decrease (Survey) needs no Set: each id is compared with
// the one before (Options.Sorted). With Options.Key, lines are
// de-duplicated by a key inside them (the id of an "id,Zone" line) and the
// first line of each key is emitted whole.
package dedupe

import (
	"bytes"
	"encoding/binary"
	"unsafe"
)

const (
	firstChunk = 4 << 10 // the arena's first chunk; chunks double up to maxChunk
	maxChunk   = 1 << 20
	// SlotBytes is what one table slot costs. The table is kept at most
	// 3/4 full, so an id costs its length + 1 in the arena and about 11
	// bytes of table when the set was sized for it (NewSet's expected),
	// up to twice that after growing.
	SlotBytes = 8
)

// golden is 2^64/φ: multiplying by it spreads every bit of a hash into the
// high bits that index the table (Fibonacci hashing).
const golden = 0x9E3779B97F4A7C15

// Set is an exact set of byte strings, sized for millions of short ids.
// It is not safe for concurrent use.
type Set struct {
	hash   func([]byte) uint64
	slots  []uint64 // 0: empty; else tag<<32 | arena offset+1
	n      int
	chunks [][]byte // arena; chunks[cur] is being filled
	cur    int
	arena  int64  // the chunks' capacity
	sink   uint64 // keeps AddAll's prefetching loads
	peak   int64
}

// NewSet returns an empty Set that hashes ids with hash and has room for
// expected ids before its table grows. The same hash must give the same
// bytes the same answer; its high 32 bits are kept as a tag and all 64
// pick the slot.
func NewSet(hash func([]byte) uint64, expected int) *Set {
	s := &Set{hash: hash}
	s.slots = allocSlots(max(16, expected*4/3+1))
	return s
}

func allocSlots(n int) []uint64 {
	b := allocBytes(n * SlotBytes)
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

func freeSlots(s []uint64) {
	if len(s) > 0 {
		freeBytes(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*SlotBytes))
	}
}

// Close gives the set's memory back; the set must not be used after.
func (s *Set) Close() {
	freeSlots(s.slots)
	s.slots = nil
	for _, ch := range s.chunks {
		freeBytes(ch)
	}
	s.chunks = nil
	s.arena = 0
}

// slot is where a hash's probe starts: the hash spread by golden, scaled
// to the table's length (any length, not only powers of two).
func (s *Set) slot(h uint64) int {
	return int(((h * golden) >> 32) * uint64(len(s.slots)) >> 32)
}

// Len is the number of ids in the set.
func (s *Set) Len() int { return s.n }

// Bytes is the memory the set holds now: arena chunks and table.
func (s *Set) Bytes() int64 {
	return s.arena + int64(len(s.slots))*SlotBytes
}

// PeakBytes is the most memory the set has held at once, counting the old
// and the new table while it grows.
func (s *Set) PeakBytes() int64 { return s.peak }

// Reset empties the set and keeps its memory for the next use.
func (s *Set) Reset() {
	clear(s.slots)
	s.n = 0
	for i := range s.chunks {
		s.chunks[i] = s.chunks[i][:0]
	}
	s.cur = 0
}

// Add adds id and reports whether it was new. id is copied.
func (s *Set) Add(id []byte) bool {
	return s.AddHashed(s.hash(id), id)
}

// AddHashed is Add for an id whose hash the caller has already computed
// with the Set's hash function.
func (s *Set) AddHashed(h uint64, id []byte) bool {
	tag := h >> 32
	i := s.slot(h)
	for {
		v := s.slots[i]
		if v == 0 {
			break
		}
		if v>>32 == tag && bytes.Equal(s.at(uint32(v)-1), id) {
			return false
		}
		if i++; i == len(s.slots) {
			i = 0
		}
	}
	if (s.n+1)*4 > len(s.slots)*3 {
		s.grow()
		return s.AddHashed(h, id) // the slot moved; the id is still new
	}
	off := s.store(id)
	s.slots[i] = tag<<32 | uint64(off+1)
	s.n++
	return true
}

// AddAll adds ids (hs[i] their hashes) in order and sets isNew[i] for the
// ones that were new. It is AddHashed for each, faster for many: the
// table slots of a whole block are fetched from memory at once rather
// than one cache miss after another.
func (s *Set) AddAll(hs []uint64, ids [][]byte, isNew []bool) {
	const block = 16
	for lo := 0; lo < len(ids); lo += block {
		hi := min(lo+block, len(ids))
		var touch uint64
		for _, h := range hs[lo:hi] {
			touch += s.slots[s.slot(h)] // independent loads: their misses overlap
		}
		s.sink = touch
		for i := lo; i < hi; i++ {
			isNew[i] = s.AddHashed(hs[i], ids[i])
		}
	}
}

// at returns the id stored at arena offset off.
func (s *Set) at(off uint32) []byte {
	ch := s.chunks[off>>20]
	p := int(off & (maxChunk - 1))
	n, k := binary.Uvarint(ch[p:])
	return ch[p+k : p+k+int(n)]
}

// store appends id to the arena and returns its offset. An entry never
// straddles two chunks; chunk i starts at offset i<<20.
func (s *Set) store(id []byte) uint32 {
	need := uvarintLen(uint64(len(id))) + len(id)
	if need > maxChunk {
		panic("dedupe: id longer than an arena chunk")
	}
	for s.cur >= len(s.chunks) || len(s.chunks[s.cur])+need > cap(s.chunks[s.cur]) {
		if s.cur < len(s.chunks) {
			s.cur++ // this one is full (or unused yet: cur starts at 0)
			if s.cur < len(s.chunks) {
				continue // a chunk kept from before a Reset
			}
		}
		size := firstChunk
		if n := len(s.chunks); n > 0 {
			size = min(maxChunk, 2*cap(s.chunks[n-1]))
		}
		s.chunks = append(s.chunks, allocBytes(max(size, need))[:0])
		s.arena += int64(max(size, need))
		s.peak = max(s.peak, s.Bytes())
	}
	ch := s.chunks[s.cur]
	off := uint32(s.cur<<20 | len(ch))
	ch = binary.AppendUvarint(ch, uint64(len(id)))
	s.chunks[s.cur] = append(ch, id...)
	return off
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// grow doubles the table and places every id again.
func (s *Set) grow() {
	old := s.slots
	defer freeSlots(old)
	s.slots = allocSlots(2 * len(old))
	s.peak = max(s.peak, s.Bytes()+int64(len(old))*SlotBytes)
	for _, v := range old {
		if v == 0 {
			continue
		}
		i := s.slot(s.hash(s.at(uint32(v) - 1)))
		for s.slots[i] != 0 {
			if i++; i == len(s.slots) {
				i = 0
			}
		}
		s.slots[i] = v
	}
}
