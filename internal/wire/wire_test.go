package wire

import (
	"bytes"
	"encoding/binary"
	"testing"
)

var lim = Limits{Min: 1, Max: 10000}

func sample() *Batch {
	b := &Batch{Flags: FlagUncoordinated, IntervalMs: 100, FirstSeq: 41, GivenUp: 7,
		Items: []Item{{EventMs: 1_700_000_000_000, Value: 1}, {EventMs: 1_700_000_000_100, Value: 10000}, {EventMs: 1_700_000_000_100, Value: 5}}}
	copy(b.Instance[:], "0123456789abcdef")
	return b
}

func TestRoundTrip(t *testing.T) {
	in := sample()
	data, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != headerSize+3*itemSize {
		t.Fatalf("encoded %d bytes, want %d", len(data), headerSize+3*itemSize)
	}
	var out Batch
	if err := Decode(data, lim, &out); err != nil {
		t.Fatal(err)
	}
	if out.Flags != in.Flags || out.Instance != in.Instance || out.IntervalMs != in.IntervalMs || out.FirstSeq != in.FirstSeq || out.GivenUp != 7 || len(out.Items) != 3 {
		t.Fatalf("decoded %+v, want %+v", out, in)
	}
	for i := range in.Items {
		if out.Items[i] != in.Items[i] {
			t.Errorf("item %d: %+v, want %+v", i, out.Items[i], in.Items[i])
		}
	}
	if out.Seq(2) != 43 {
		t.Errorf("Seq(2) = %d, want 43", out.Seq(2))
	}
}

// The byte layout is the documented contract (docs/wire-format.md).
func TestLayoutIsTheDocumentedOne(t *testing.T) {
	data, _ := Encode(sample())
	if data[0] != 1 || data[1] != FlagUncoordinated || binary.BigEndian.Uint16(data[2:]) != 3 ||
		!bytes.Equal(data[4:20], []byte("0123456789abcdef")) || binary.BigEndian.Uint32(data[20:]) != 100 ||
		binary.BigEndian.Uint64(data[24:]) != 41 || binary.BigEndian.Uint32(data[32:]) != 7 ||
		binary.BigEndian.Uint64(data[36:]) != 1_700_000_000_000 || binary.BigEndian.Uint32(data[44:]) != 1 {
		t.Fatalf("layout changed: % x", data[:48])
	}
}

func TestEveryRejection(t *testing.T) {
	good, _ := Encode(sample())
	mutate := func(f func([]byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	cases := []struct {
		name string
		data []byte
		want Reason
	}{
		{"empty", nil, ReasonTruncated},
		{"junk text", []byte("hello"), ReasonVersion},
		{"json", []byte(`{"value": 5}`), ReasonVersion},
		{"version 2", mutate(func(b []byte) []byte { b[0] = 2; return b }), ReasonVersion},
		{"short header", good[:20], ReasonTruncated},
		{"oversized", make([]byte, MaxSize+1), ReasonOversized},
		{"zero items", mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], 0); return b[:headerSize] }), ReasonEmpty},
		{"too many items", mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], MaxItems+1); return b }), ReasonOversized},
		{"missing item bytes", good[:len(good)-1], ReasonLength},
		{"extra bytes", append(append([]byte(nil), good...), 0), ReasonLength},
		{"zero interval", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[20:], 0); return b }), ReasonInterval},
		{"value 0", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[headerSize+8:], 0); return b }), ReasonOutOfRange},
		{"value 10001", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[headerSize+itemSize+8:], 10001); return b }), ReasonOutOfRange},
		{"negative time", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[headerSize:], uint64(1<<63))
			return b
		}), ReasonEventTime},
		{"time going back", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[headerSize+2*itemSize:], 1_600_000_000_000)
			return b
		}), ReasonEventTime},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b Batch
			err := Decode(c.data, lim, &b)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := ReasonOf(err); got != c.want {
				t.Fatalf("reason %q (%v), want %q", got, err, c.want)
			}
		})
	}
}

func TestEncodeRefusesBadBatches(t *testing.T) {
	if _, err := Encode(&Batch{IntervalMs: 1}); err == nil {
		t.Error("an empty batch was encoded")
	}
	if _, err := Encode(&Batch{IntervalMs: 1, Items: make([]Item, MaxItems+1)}); err == nil {
		t.Error("an oversized batch was encoded")
	}
}

func TestInstanceIDText(t *testing.T) {
	if got := sample().Instance.String(); got != "30313233343536373839616263646566" {
		t.Fatalf("String() = %q", got)
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Encode(sample())
	f.Add(good)
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Batch
		if err := Decode(data, lim, &b); err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		again, err := Encode(&b)
		if err != nil || !bytes.Equal(again[:32], data[:32]) || !bytes.Equal(again[36:], data[36:]) {
			t.Fatalf("accepted input does not re-encode to itself")
		}
	})
}

func BenchmarkDecode200(b *testing.B) {
	batch := sample()
	batch.Items = batch.Items[:0]
	for i := 0; i < 200; i++ {
		batch.Items = append(batch.Items, Item{EventMs: 1_700_000_000_000 + int64(i), Value: uint32(i%10000 + 1)})
	}
	data, _ := Encode(batch)
	var out Batch
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Decode(data, lim, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// A message of a generator that predates GivenUp (its bytes 32..35 zero)
// still decodes, giving up nothing.
func TestOlderMessagesGiveUpNothing(t *testing.T) {
	data, _ := Encode(sample())
	binary.BigEndian.PutUint32(data[32:], 0)
	out := Batch{GivenUp: 99}
	if err := Decode(data, lim, &out); err != nil || out.GivenUp != 0 || len(out.Items) != 3 {
		t.Fatalf("decoded %+v, %v", out, err)
	}
}
