// Package windowapi is the contract between integeraverage-cal and
// integer-api: the idempotent window write (PUT /v1/integers/{start}) and
// the window as the API serves it.
//
// A write carries pieces: the contribution of one NSQ message to one
// window, named by generator instance and sequence range. The store adds a
// piece whose range it has not seen and skips one it has, so a write can be
// repeated, a redelivered message can be written again, and a late piece
// amends a stored window, all without counting anything twice.
package windowapi

import (
	"time"
)

// Piece is one generator's consecutive integers in one window.
type Piece struct {
	Instance string `json:"instance"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Count    int64  `json:"count"`
	Sum      int64  `json:"sum"`
}

// Write is the body of PUT /v1/integers/{start}.
type Write struct {
	End time.Time `json:"end"`
	// Fence is the writer's leadership token; the store refuses a token
	// lower than the highest it has accepted.
	Fence  uint64  `json:"fence"`
	Pieces []Piece `json:"pieces"`
}

// Piece outcomes, in the order of Write.Pieces.
const (
	Added     = "added"     // counted now
	Duplicate = "duplicate" // already counted: skipped
	Conflict  = "conflict"  // overlaps a stored range without matching it: refused
)

// Window is one stored window as the API serves it.
type Window struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Average float64   `json:"average"`
	Count   int64     `json:"count"`
	Sum     int64     `json:"sum"`
	// Amendments counts writes that changed the window after it was first
	// stored (late integers).
	Amendments int64 `json:"amendments"`
}

// WriteResult is the answer to a write.
type WriteResult struct {
	Window
	Created bool     `json:"created"`
	Pieces  []string `json:"pieces"`
}

// Error is every error body of the API.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes.
const (
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeMethod       = "method_not_allowed"
	CodeStaleFence   = "stale_fence"
	CodeUnavailable  = "store_unavailable"
	CodeTooLarge     = "too_large"
)

// TimeFormat is how the API writes and reads times: RFC 3339 in UTC, with
// milliseconds when they are not zero.
const TimeFormat = "2006-01-02T15:04:05.999Z07:00"

// Path is the write path of a window start.
func Path(start time.Time) string { return "/v1/integers/" + start.UTC().Format(TimeFormat) }
