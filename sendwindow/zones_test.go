package sendwindow

import (
	"fmt"
	"testing"
)

func TestZones(t *testing.T) {
	t.Parallel()
	var z Zones
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"Asia/Tokyo", true}, {"UTC", true}, {"America/Argentina/Buenos_Aires", true},
		{"", false}, {"Local", false}, {"Mars/Olympus", false}, {"../../etc/passwd", false},
		{"/etc/localtime", false}, {"asia/tokyo", false},
	} {
		for range 2 { // the second answer comes from what was kept
			loc, ok := z.Load(tc.name)
			if ok != tc.ok || ok && loc.String() != tc.name {
				t.Errorf("Load(%q) = %v, %v; want ok %v", tc.name, loc, ok, tc.ok)
			}
			if known := z.Known([]byte(tc.name)); known != tc.ok {
				t.Errorf("Known(%q) = %v, want %v", tc.name, known, tc.ok)
			}
		}
	}
	for i := range 2 * maxBadZones { // distinct bad names cost bounded memory
		z.Load(fmt.Sprintf("Bad/%d", i))
	}
	if n := len(z.bad); n > maxBadZones {
		t.Errorf("%d bad names kept, at most %d", n, maxBadZones)
	}
	if _, ok := z.Load("Asia/Tokyo"); !ok || len(z.ok) != 3 {
		t.Errorf("zones kept: %d, want 3", len(z.ok))
	}
}
