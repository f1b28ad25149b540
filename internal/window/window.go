// Package window is the event-time windowing shared by the averager, the
// audits and the tests: windows of a fixed size aligned to the Unix epoch.
package window

import "time"

// Start returns the start (Unix ms) of the window of sizeMs that holds
// eventMs. Windows are [start, start+size): an event exactly on a boundary
// belongs to the window that starts there.
func Start(eventMs, sizeMs int64) int64 {
	s := eventMs - eventMs%sizeMs
	if eventMs%sizeMs < 0 { // floor, not truncation, before the epoch
		s -= sizeMs
	}
	return s
}

// Span is one window.
type Span struct {
	StartMs, EndMs int64
}

// Of returns the window of size that holds eventMs.
func Of(eventMs int64, size time.Duration) Span {
	ms := size.Milliseconds()
	s := Start(eventMs, ms)
	return Span{StartMs: s, EndMs: s + ms}
}

// Start and End as times, in UTC.
func (s Span) Start() time.Time { return time.UnixMilli(s.StartMs).UTC() }
func (s Span) End() time.Time   { return time.UnixMilli(s.EndMs).UTC() }

// Average is sum/count as a float; 0 for an empty window.
func Average(sum, count int64) float64 {
	if count == 0 {
		return 0
	}
	return float64(sum) / float64(count)
}
