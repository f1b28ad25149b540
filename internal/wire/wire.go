// Package wire is the one message format that integer-gen publishes and
// integeraverage-cal consumes. It is binary, fixed-width and versioned: see
// docs/wire-format.md for the byte layout. A message is a batch of one or
// more integers from one generator with consecutive sequence numbers, so the
// same format serves the 100 ms default (batches of one) and the load mode.
package wire

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Version is the only version this package writes and reads.
const Version = 1

const (
	headerSize = 36
	itemSize   = 12
	// MaxItems bounds a batch so that a message stays well under nsqd's
	// default --max-msg-size (1 MiB) and a consumer's memory per message is
	// bounded.
	MaxItems = 4096
	// MaxSize is the largest valid message in bytes.
	MaxSize = headerSize + MaxItems*itemSize
)

// Flag bits of the header.
const (
	// FlagUncoordinated marks integers emitted while the generator could not
	// reach its coordination (only with --on-coordination-loss=mark): they
	// carry no no-collision guarantee.
	FlagUncoordinated uint8 = 1 << 0
	// FlagDuplicate marks a deliberate re-publish of a message (used by the
	// fault-injection suite); consumers treat it like any other copy.
	FlagDuplicate uint8 = 1 << 1
	// FlagSlotEnd says that the batch's last integer is the last its
	// generator emits in that integer's slot: the generator's stream is
	// complete up to the slot's end (a consumer's watermark can pass it
	// without waiting for the next slot).
	FlagSlotEnd uint8 = 1 << 2
)

// InstanceID identifies one generator process. It is random per process
// start, so sequence numbers never need to survive a restart.
type InstanceID [16]byte

func (id InstanceID) String() string { return hex.EncodeToString(id[:]) }

// Item is one generated integer.
type Item struct {
	// EventMs is the start of the slot it was drawn for, in Unix milliseconds.
	EventMs int64
	Value   uint32
}

// Batch is one message: integers of one generator, sequence numbers
// FirstSeq, FirstSeq+1, … in order.
type Batch struct {
	Flags    uint8
	Instance InstanceID
	// IntervalMs is the generator's slot length; EventMs/IntervalMs is the slot.
	IntervalMs uint32
	FirstSeq   uint64
	// GivenUp counts the sequence numbers just before FirstSeq that the
	// generator gave up (never published): a consumer waiting for them can
	// stop waiting. 0 in messages of generators that predate the field.
	GivenUp uint32
	Items   []Item
}

// Seq returns the sequence number of item i.
func (b *Batch) Seq(i int) uint64 { return b.FirstSeq + uint64(i) }

// Reason names why a message was rejected; it is also the metric label and
// the reason written on the dead-letter topic.
type Reason string

// The rejection reasons.
const (
	ReasonTruncated  Reason = "truncated"
	ReasonVersion    Reason = "unknown_version"
	ReasonOversized  Reason = "oversized"
	ReasonEmpty      Reason = "empty_batch"
	ReasonLength     Reason = "length_mismatch"
	ReasonInterval   Reason = "bad_interval"
	ReasonOutOfRange Reason = "value_out_of_range"
	ReasonEventTime  Reason = "bad_event_time"
)

// Reasons lists every Reason, so metrics can be initialised to zero.
var Reasons = []Reason{ReasonTruncated, ReasonVersion, ReasonOversized, ReasonEmpty,
	ReasonLength, ReasonInterval, ReasonOutOfRange, ReasonEventTime}

// Error is a rejected message: why, and what about it.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Reason, e.Detail) }

// ReasonOf returns the Reason of a decode or validation error, or "" when
// err is not one.
func ReasonOf(err error) Reason {
	var we *Error
	if errors.As(err, &we) {
		return we.Reason
	}
	return ""
}

func reject(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Append encodes b onto dst and returns the extended slice.
func Append(dst []byte, b *Batch) ([]byte, error) {
	if n := len(b.Items); n == 0 || n > MaxItems {
		return dst, fmt.Errorf("wire: batch of %d items, want 1..%d", n, MaxItems)
	}
	var h [headerSize]byte
	h[0] = Version
	h[1] = b.Flags
	binary.BigEndian.PutUint16(h[2:], uint16(len(b.Items)))
	copy(h[4:20], b.Instance[:])
	binary.BigEndian.PutUint32(h[20:], b.IntervalMs)
	binary.BigEndian.PutUint64(h[24:], b.FirstSeq)
	// h[32:36] was reserved (zero) before GivenUp: readers that ignore it
	// still decode these messages.
	binary.BigEndian.PutUint32(h[32:], b.GivenUp)
	dst = append(dst, h[:]...)
	var it [itemSize]byte
	for _, item := range b.Items {
		binary.BigEndian.PutUint64(it[0:], uint64(item.EventMs))
		binary.BigEndian.PutUint32(it[8:], item.Value)
		dst = append(dst, it[:]...)
	}
	return dst, nil
}

// Encode returns b encoded.
func Encode(b *Batch) ([]byte, error) {
	return Append(make([]byte, 0, headerSize+len(b.Items)*itemSize), b)
}

// Limits are what a consumer accepts beyond the byte layout.
type Limits struct {
	Min, Max uint32
}

// Decode parses data into b, reusing b.Items' storage, and checks it against
// lim. Any error is an *Error with its Reason.
func Decode(data []byte, lim Limits, b *Batch) error {
	if len(data) > MaxSize {
		return reject(ReasonOversized, "%d bytes, the limit is %d", len(data), MaxSize)
	}
	if len(data) < 1 {
		return reject(ReasonTruncated, "empty message")
	}
	if data[0] != Version {
		return reject(ReasonVersion, "version byte %d, this consumer reads version %d", data[0], Version)
	}
	if len(data) < headerSize {
		return reject(ReasonTruncated, "%d bytes, a header is %d", len(data), headerSize)
	}
	n := int(binary.BigEndian.Uint16(data[2:]))
	if n == 0 {
		return reject(ReasonEmpty, "batch of 0 items")
	}
	if n > MaxItems {
		return reject(ReasonOversized, "batch of %d items, the limit is %d", n, MaxItems)
	}
	if want := headerSize + n*itemSize; len(data) != want {
		return reject(ReasonLength, "%d bytes for %d items, want %d", len(data), n, want)
	}
	b.Flags = data[1]
	copy(b.Instance[:], data[4:20])
	b.IntervalMs = binary.BigEndian.Uint32(data[20:])
	if b.IntervalMs == 0 {
		return reject(ReasonInterval, "slot interval of 0 ms")
	}
	b.FirstSeq = binary.BigEndian.Uint64(data[24:])
	b.GivenUp = binary.BigEndian.Uint32(data[32:])
	b.Items = b.Items[:0]
	p := data[headerSize:]
	for i := 0; i < n; i++ {
		item := Item{
			EventMs: int64(binary.BigEndian.Uint64(p[0:])),
			Value:   binary.BigEndian.Uint32(p[8:]),
		}
		p = p[itemSize:]
		if item.Value < lim.Min || item.Value > lim.Max {
			return reject(ReasonOutOfRange, "item %d (seq %d) value %d, accepted %d..%d",
				i, b.FirstSeq+uint64(i), item.Value, lim.Min, lim.Max)
		}
		if item.EventMs <= 0 {
			return reject(ReasonEventTime, "item %d (seq %d) event time %d ms", i, b.FirstSeq+uint64(i), item.EventMs)
		}
		if i > 0 && item.EventMs < b.Items[i-1].EventMs {
			return reject(ReasonEventTime, "item %d (seq %d) event time %d ms goes back from %d ms",
				i, b.FirstSeq+uint64(i), item.EventMs, b.Items[i-1].EventMs)
		}
		b.Items = append(b.Items, item)
	}
	return nil
}
