package sendwindow

import (
	"sync"
	"time"
)

// Zones loads time zones by IANA name once each (time.LoadLocation reads
// the zone database at every call: too slow for an audience of millions
// of lines). Names that are not zones are remembered too, up to a bound,
// so a hostile audience of distinct bad names costs memory it cannot
// grow. The zero value is ready; it is safe for concurrent use.
type Zones struct {
	mu  sync.Mutex
	ok  map[string]*time.Location
	bad map[string]struct{}
}

// maxBadZones bounds the names remembered as unknown (then forgotten).
const maxBadZones = 4096

// Load is the zone named name; ok is false for a name that is not an
// IANA zone. "" and "Local" (the server's own zone, which the sender
// cannot mean) are never zones here.
func (z *Zones) Load(name string) (*time.Location, bool) {
	if name == "" || name == "Local" {
		return nil, false
	}
	z.mu.Lock()
	if loc, ok := z.ok[name]; ok {
		z.mu.Unlock()
		return loc, true
	}
	if _, bad := z.bad[name]; bad {
		z.mu.Unlock()
		return nil, false
	}
	z.mu.Unlock()
	loc, err := time.LoadLocation(name)
	z.mu.Lock()
	defer z.mu.Unlock()
	if err != nil {
		if len(z.bad) >= maxBadZones {
			clear(z.bad)
		}
		if z.bad == nil {
			z.bad = map[string]struct{}{}
		}
		z.bad[name] = struct{}{}
		return nil, false
	}
	if z.ok == nil {
		z.ok = map[string]*time.Location{}
	}
	z.ok[name] = loc // at most the zone database's few hundred names
	return loc, true
}

// Known is Load's verdict on a name in bytes (an audience line's zone):
// a zone met before costs a map read and no allocation.
func (z *Zones) Known(name []byte) bool {
	z.mu.Lock()
	_, ok := z.ok[string(name)] // no copy for the lookup
	z.mu.Unlock()
	if ok {
		return true
	}
	_, ok = z.Load(string(name))
	return ok
}
