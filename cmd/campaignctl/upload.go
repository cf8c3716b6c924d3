package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/campaignd/campaignd/campaigns"
)

// redrawEvery is how often, at most, a progress line is drawn again.
const redrawEvery = 100 * time.Millisecond

// isTerminal reports whether w is a terminal (a character device), where a
// line redrawn with "\r" makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress shows an upload on w: on a terminal a bar redrawn with "\r" at
// most every redrawEvery, replaced at the end by the summary line; on
// anything else the summary line alone.
type progress struct {
	w    io.Writer
	tty  bool
	size int64 // the file's size; 0 when unknown
	now  func() time.Time

	line         liner
	start, drawn time.Time
	n, lines     int64
	lastByte     byte
}

// liner redraws one line of a terminal.
type liner struct {
	w     io.Writer
	width int // length of the line on screen
}

// draw replaces the line on screen with s.
func (l *liner) draw(s string) {
	pad := max(l.width-len(s), 0)
	fmt.Fprintf(l.w, "\r%s%s", s, strings.Repeat(" ", pad))
	l.width = len(s)
}

// end ends the line drawn, if any.
func (l *liner) end() {
	if l.width > 0 {
		fmt.Fprintln(l.w)
		l.width = 0
	}
}

func newProgress(w io.Writer, tty bool, size int64, now func() time.Time) *progress {
	p := &progress{w: w, tty: tty, size: size, now: now, line: liner{w: w}, start: now(), lastByte: '\n'}
	if tty {
		p.line.draw(p.bar(p.start))
		p.drawn = p.start
	}
	return p
}

// reader counts what r hands out (bytes and lines) and shows it.
func (p *progress) reader(r io.Reader) io.Reader { return &countingReader{r: r, p: p} }

type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.p.add(b[:n])
	}
	return n, err
}

func (p *progress) add(b []byte) {
	p.n += int64(len(b))
	p.lines += int64(bytes.Count(b, []byte{'\n'}))
	p.lastByte = b[len(b)-1]
	if !p.tty {
		return
	}
	if t := p.now(); t.Sub(p.drawn) >= redrawEvery {
		p.line.draw(p.bar(t))
		p.drawn = t
	}
}

// Lines is the count of lines read: a last line without a newline counts.
func (p *progress) Lines() int64 {
	if p.lastByte != '\n' {
		return p.lines + 1
	}
	return p.lines
}

// bar is the progress line: bytes sent of the file's size, percent, rate
// and lines so far.
func (p *progress) bar(t time.Time) string {
	var b strings.Builder
	if p.size > 0 {
		frac := min(float64(p.n)/float64(p.size), 1)
		const width = 30
		k := int(frac * width)
		fmt.Fprintf(&b, "uploading [%s%s] %5.1f%% %s", strings.Repeat("#", k), strings.Repeat(".", width-k),
			100*frac, ofSize(p.n, p.size))
	} else {
		fmt.Fprintf(&b, "uploading %s", megabytes(p.n))
	}
	rate := 0.0
	if d := t.Sub(p.start).Seconds(); d > 0 {
		rate = float64(p.n) / 1e6 / d
	}
	fmt.Fprintf(&b, "  %.1f MB/s  %s lines", rate, commas(p.lines))
	return b.String()
}

// done ends the upload with its summary line.
func (p *progress) done() {
	t := p.now()
	s := fmt.Sprintf("uploaded %s, %s in %s", sizeText(p.n), plural(p.Lines(), "line"), elapsed(t.Sub(p.start)))
	if p.tty {
		p.line.draw(s)
		p.line.end()
		return
	}
	fmt.Fprintln(p.w, s)
}

// fail ends the bar's line, so that the error is printed on a line of its
// own.
func (p *progress) fail() { p.line.end() }

// planReport is the line told once campaignd has planned an audience of
// lines lines (as uploaded).
func planReport(st campaigns.Status, lines int64) string {
	s := fmt.Sprintf("planned: %s from %s; %s and %s left out",
		plural(st.TargetsTotal, "distinct id"), plural(lines, "line"),
		plural(st.Duplicates, "duplicate"), plural(st.Invalid, "invalid line"))
	if blank := lines - st.TargetsTotal - st.Duplicates - st.Invalid; blank > 0 {
		s += fmt.Sprintf(" (%s skipped)", plural(blank, "blank line"))
	}
	return s
}

// planningLine is the line shown on a terminal while the plan goes on
// (the duplicates are known only at its end).
func planningLine(st campaigns.Status) string {
	return fmt.Sprintf("planning: %s so far", plural(st.TargetsTotal, "distinct id"))
}

// commas writes n with thousands separators: 10,000,000.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return commas(n) + " " + what + "s"
}

// megabytes is n in decimal megabytes, one decimal: 130.0 MB.
func megabytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// ofSize is "n / size", both in the unit that suits size.
func ofSize(n, size int64) string {
	unit, name := 1e6, "MB"
	switch {
	case size < 1e6:
		unit, name = 1e3, "kB"
	case size >= 1e9:
		unit, name = 1e9, "GB"
	}
	return fmt.Sprintf("%.1f / %.1f %s", float64(n)/unit, float64(size)/unit, name)
}

// sizeText is n in the unit that suits it (decimal units).
func sizeText(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1e6:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1e9:
		return megabytes(n)
	default:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	}
}

func elapsed(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
