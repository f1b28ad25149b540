// Package windowcheck compares the windows integer-api serves with what an
// audit consumer saw nsqd accept: the exactly-once check of the fault and
// cluster tests.
package windowcheck

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/windowapi"
)

// AllWindows pages back through base's history with ?before=, 100 at a time.
func AllWindows(base string) ([]windowapi.Window, bool) {
	const limit = 100
	var all, page []windowapi.Window
	url := base + "/v1/integers?limit=" + strconv.Itoa(limit)
	for {
		page = page[:0]
		if !okJSON(url, &page) {
			return nil, false
		}
		all = append(all, page...)
		if len(page) < limit {
			return all, true
		}
		oldest := page[len(page)-1].Start.UTC().Format(time.RFC3339Nano)
		url = base + "/v1/integers?limit=" + strconv.Itoa(limit) + "&before=" + oldest
	}
}

// Comparison is what Compare found, window by window.
type Comparison struct {
	Windows                          int
	Accepted, Counted, Lost, Doubled int64
	Details                          []string
}

// Compare checks every window: what the audit saw (nsqd accepted) against
// what the API serves.
func Compare(audited map[int64]testenv.Totals, served []windowapi.Window) Comparison {
	var s Comparison
	byStart := map[int64]windowapi.Window{}
	for _, w := range served {
		byStart[w.Start.UnixMilli()] = w
	}
	starts := make([]int64, 0, len(audited))
	for st := range audited {
		starts = append(starts, st)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	for _, st := range starts {
		a := audited[st]
		w, ok := byStart[st]
		s.Windows++
		s.Accepted += a.Count
		s.Counted += w.Count
		switch {
		case !ok:
			s.Lost += a.Count
			s.Details = append(s.Details, fmt.Sprintf("window %s: not served, audit has %d", time.UnixMilli(st).UTC().Format(time.TimeOnly), a.Count))
		case w.Count < a.Count:
			s.Lost += a.Count - w.Count
		case w.Count > a.Count:
			s.Doubled += w.Count - a.Count
		}
		if ok && (w.Count != a.Count || w.Sum != a.Sum) {
			s.Details = append(s.Details, fmt.Sprintf("window %s: served count %d sum %d, audit count %d sum %d",
				w.Start.Format(time.TimeOnly), w.Count, w.Sum, a.Count, a.Sum))
		}
	}
	for st, w := range byStart {
		if _, ok := audited[st]; !ok {
			s.Doubled += w.Count
			s.Details = append(s.Details, fmt.Sprintf("window %s served (count %d) but never audited", w.Start.Format(time.TimeOnly), w.Count))
		}
	}
	return s
}

// okJSON is true when url answered 200 with JSON decoded into v.
func okJSON(url string, v any) bool {
	code, err := testenv.GetJSON(url, v)
	return err == nil && code == 200
}
