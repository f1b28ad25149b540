package permute

import (
	"math"
	"testing"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// The first positions of a slot never repeat a value.
func TestPositionsOfASlotAreDistinct(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 7, 100, 10000, 16384, 16385} {
		p, err := New(testKey, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, slot := range []int64{0, 1, 17787000000, -5} {
			seen := make([]bool, n)
			for i := uint64(0); i < min(n, 200); i++ {
				v := p.At(slot, i)
				if v >= n {
					t.Fatalf("n=%d slot=%d: At(%d)=%d out of range", n, slot, i, v)
				}
				if seen[v] {
					t.Fatalf("n=%d slot=%d: value %d twice", n, slot, v)
				}
				seen[v] = true
			}
		}
	}
}

// chiSquare returns the statistic for counts against a uniform expectation.
func chiSquare(counts []int, total int) float64 {
	exp := float64(total) / float64(len(counts))
	var x float64
	for _, c := range counts {
		d := float64(c) - exp
		x += d * d / exp
	}
	return x
}

// chiSquareCritical is the 99.9% quantile for df degrees of freedom
// (Wilson–Hilferty approximation, accurate for large df).
func chiSquareCritical(df int) float64 {
	k := float64(df)
	z := 3.090 // 99.9%
	return k * math.Pow(1-2/(9*k)+z*math.Sqrt(2/(9*k)), 3)
}

// One generator's index over many slots must be uniform on the domain.
func TestEachIndexIsUniformAcrossSlots(t *testing.T) {
	const n, slots = 100, 50000
	p, _ := New(testKey, n)
	for _, index := range []uint64{0, 1, 37, 99} {
		counts := make([]int, n)
		for s := int64(0); s < slots; s++ {
			counts[p.At(1_700_000_000_0+s, index)]++
		}
		if x, crit := chiSquare(counts, slots), chiSquareCritical(n-1); x > crit {
			t.Errorf("index %d: chi-square %.1f > %.1f (99.9%%, df=%d): not uniform", index, x, crit, n-1)
		}
	}
}

// Two indices in the same slot must not be correlated: their pair is
// uniform over ordered pairs of distinct values.
func TestPairsOfIndicesAreUniform(t *testing.T) {
	const n, slots = 12, 100000
	p, _ := New(testKey, n)
	counts := make([]int, n*n)
	for s := int64(0); s < slots; s++ {
		a, b := p.At(s, 0), p.At(s, 1)
		counts[a*n+b]++
	}
	distinct := make([]int, 0, n*(n-1))
	for a := 0; a < n; a++ {
		for b := 0; b < n; b++ {
			if a == b {
				if counts[a*n+b] != 0 {
					t.Fatalf("indices 0 and 1 collided on value %d", a)
				}
				continue
			}
			distinct = append(distinct, counts[a*n+b])
		}
	}
	if x, crit := chiSquare(distinct, slots), chiSquareCritical(len(distinct)-1); x > crit {
		t.Errorf("pairs chi-square %.1f > %.1f: correlated", x, crit)
	}
}

func TestDifferentKeysDiffer(t *testing.T) {
	a, _ := New(testKey, 10000)
	b, _ := New([]byte("fedcba9876543210fedcba9876543210"), 10000)
	same := 0
	for s := int64(0); s < 1000; s++ {
		if a.At(s, 0) == b.At(s, 0) {
			same++
		}
	}
	if same > 5 {
		t.Errorf("%d of 1000 slots equal under different keys", same)
	}
}

func TestRejectsBadArguments(t *testing.T) {
	if _, err := New([]byte("short"), 10); err == nil {
		t.Error("a 5-byte key was accepted")
	}
	if _, err := New(testKey, 0); err == nil {
		t.Error("an empty domain was accepted")
	}
}

func BenchmarkAt(b *testing.B) {
	p, _ := New(testKey, 10000)
	var sink uint64
	for i := 0; b.Loop(); i++ {
		sink += p.At(int64(i), uint64(i%20))
	}
	_ = sink
}

func TestRangeIsTheSameAsAt(t *testing.T) {
	p, _ := New(testKey, 10000)
	for _, slot := range []int64{3, 1_800_000_000_000} {
		got := p.Range(slot, 40, 60, nil)
		for i, v := range got {
			if want := p.At(slot, uint64(40+i)); v != want {
				t.Fatalf("slot %d position %d: Range %d, At %d", slot, 40+i, v, want)
			}
		}
	}
	big, _ := New(testKey, 1<<21) // the sparse table
	seen := map[uint64]bool{}
	for _, v := range big.Range(7, 0, 500, nil) {
		if seen[v] || v >= 1<<21 {
			t.Fatalf("value %d repeated or out of range", v)
		}
		seen[v] = true
	}
}

func BenchmarkRange100(b *testing.B) {
	p, _ := New(testKey, 10000)
	dst := make([]uint64, 0, 100)
	for i := 0; b.Loop(); i++ {
		dst = p.Range(int64(i), 100, 200, dst[:0])
	}
}
