package dedupe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// spillBuf is each part file's write buffer; it is read back through a
// buffer of this size or the longest record's, if longer.
const spillBuf = 64 << 10

// spill keeps, while the first pass reads the audience, the ids of every
// later part in a file of its own, so that part's pass reads its file
// instead of the whole audience again: the audience is read, split into
// lines and hashed once. With Options.Key it keeps whole lines (their
// pass emits them whole) and the hash of their key; the key is taken from
// the line again when it is read back, which costs less than storing it.
//
// A part file holds records of the id's (key's) hash (8 bytes,
// little-endian), the id's (line's) length (uvarint) and its bytes, in the
// audience's order, which is the order a pass that re-reads the audience
// meets them in: a part read from its file emits exactly what a
// re-reading pass would. The files are unlinked as soon as they are
// created, so nothing is left behind by a crash. A part whose file cannot
// be created or written is re-read from the audience in its pass instead
// (ok reports which).
type spill struct {
	files   []*os.File // [part]; nil: re-read (part 0 is never spilled)
	w       []*bufio.Writer
	skipped []int64 // [part] lines Keep refused, counted when the part is read back (with Key, the first pass counts them)
	err     []error // [part] why the part is re-read (nil: ok, or never tried)
	bytes   int64   // written, all parts
	rec     []byte
}

// newSpill creates a file for each part from 1 to parts-1 in dir; parts
// whose file cannot be created are left to re-read.
func newSpill(dir string, parts int) *spill {
	sp := &spill{files: make([]*os.File, parts), w: make([]*bufio.Writer, parts), skipped: make([]int64, parts), err: make([]error, parts)}
	for p := 1; p < parts; p++ {
		f, err := os.CreateTemp(dir, "campaignd-plan-*")
		if err != nil {
			sp.err[p] = fmt.Errorf("dedupe: spill part %d: %w", p, err)
			continue
		}
		_ = os.Remove(f.Name()) // unlinked: the open file lives until it is closed
		sp.files[p], sp.w[p] = f, bufio.NewWriterSize(f, spillBuf)
	}
	return sp
}

// put appends one id or, with Options.Key, line (h the hash of its id or
// key) to part p's file, if it has one.
func (sp *spill) put(p int, h uint64, id []byte) {
	w := sp.w[p]
	if w == nil {
		return
	}
	sp.rec = binary.LittleEndian.AppendUint64(sp.rec[:0], h)
	sp.rec = binary.AppendUvarint(sp.rec, uint64(len(id)))
	sp.rec = append(sp.rec, id...)
	if _, err := w.Write(sp.rec); err != nil {
		sp.drop(p, err)
		return
	}
	sp.bytes += int64(len(sp.rec))
}

// skip counts a line of part p that Keep refused.
func (sp *spill) skip(p int) { sp.skipped[p]++ }

// finish flushes every file after the first pass; a part that fails is
// left to re-read.
func (sp *spill) finish() {
	for p, w := range sp.w {
		if w == nil {
			continue
		}
		if err := w.Flush(); err != nil {
			sp.drop(p, err)
			continue
		}
		if _, err := sp.files[p].Seek(0, io.SeekStart); err != nil {
			sp.drop(p, err)
		}
	}
}

func (sp *spill) drop(p int, err error) {
	if sp.err[p] == nil {
		sp.err[p] = fmt.Errorf("dedupe: spill part %d: %w", p, err)
	}
	if sp.files[p] != nil {
		_ = sp.files[p].Close()
	}
	sp.files[p], sp.w[p] = nil, nil
}

// ok reports whether part p can be read back from its file.
func (sp *spill) ok(p int) bool { return sp != nil && sp.files[p] != nil }

// replay reads part p's file back, calling f for each id (line) with its
// hash,
// and closes the file (its space is freed then). buf must hold the
// longest record. An error reading it ends the plan: the part has been
// partly emitted, and only a new Run (which emits the same output) can
// make up the rest.
func (sp *spill) replay(p int, buf []byte, f func(h uint64, id []byte) error) error {
	file := sp.files[p]
	defer func() { _ = file.Close(); sp.files[p], sp.w[p] = nil, nil }()
	have, eof := 0, false // buf[:have] is read and not yet parsed
	for {
		if !eof && have < len(buf) {
			n, err := io.ReadFull(file, buf[have:])
			have += n
			switch {
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				eof = true
			case err != nil:
				return fmt.Errorf("dedupe: read spilled part %d: %w", p, err)
			}
		}
		b := buf[:have]
		for len(b) >= 9 { // a hash and at least a length
			n, k := binary.Uvarint(b[8:])
			if k <= 0 || uint64(len(b)-8-k) < n {
				break // a record cut by the buffer's end (or a bad one: below)
			}
			if err := f(binary.LittleEndian.Uint64(b), b[8+k:8+k+int(n)]); err != nil {
				return err
			}
			b = b[8+k+int(n):]
		}
		if eof {
			if len(b) > 0 {
				return fmt.Errorf("dedupe: read spilled part %d: %w", p, io.ErrUnexpectedEOF)
			}
			return nil
		}
		if len(b) == len(buf) {
			return fmt.Errorf("dedupe: read spilled part %d: a record longer than %d bytes", p, len(buf))
		}
		have = copy(buf, b)
	}
}

// close gives back every file still open.
func (sp *spill) close() {
	if sp == nil {
		return
	}
	for p := range sp.files {
		if sp.files[p] != nil {
			_ = sp.files[p].Close()
			sp.files[p], sp.w[p] = nil, nil
		}
	}
}
