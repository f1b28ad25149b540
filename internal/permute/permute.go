// Package permute gives, for every slot, a uniformly random ordering of the
// values 0..n-1 that every generator computes alike from a shared key.
// Generator k of a slot emits position k: distinct indices give distinct
// values, and each position of a uniform random permutation is uniform on
// 0..n-1, so the no-collision guarantee costs no uniformity. Together, the
// generators of a slot draw a uniform sample without replacement.
//
// Position k is computed by the first k+1 steps of a Fisher–Yates shuffle
// driven by ChaCha8 keyed with (key, slot), with the swaps kept sparse: the
// cost is O(k²) comparisons for small k and needs no table of n entries.
package permute

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// KeySize is the length of the shared key.
const KeySize = 32

// Perm orders 0..n-1 for every slot.
type Perm struct {
	n   uint64
	key [KeySize]byte
}

// New returns the permutation family of 0..n-1 for key (KeySize bytes,
// shared by every generator).
func New(key []byte, n uint64) (*Perm, error) {
	if n < 1 {
		return nil, fmt.Errorf("permute: empty domain")
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("permute: key of %d bytes, want %d", len(key), KeySize)
	}
	p := &Perm{n: n}
	copy(p.key[:], key)
	return p, nil
}

// N is the domain size.
func (p *Perm) N() uint64 { return p.n }

type swap struct{ pos, val uint64 }

// At returns the value at position index (< n) of slot's ordering.
func (p *Perm) At(slot int64, index uint64) uint64 {
	if index >= p.n {
		panic(fmt.Sprintf("permute: index %d outside 0..%d", index, p.n-1))
	}
	seed := p.key
	binary.LittleEndian.PutUint64(seed[24:], binary.LittleEndian.Uint64(seed[24:])^uint64(slot))
	rng := rand.New(rand.NewChaCha8(seed))

	// Positions moved so far; every other position still holds itself.
	var buf [64]swap
	moved := buf[:0]
	get := func(pos uint64) uint64 {
		for _, s := range moved {
			if s.pos == pos {
				return s.val
			}
		}
		return pos
	}
	set := func(pos, val uint64) {
		for i := range moved {
			if moved[i].pos == pos {
				moved[i].val = val
				return
			}
		}
		moved = append(moved, swap{pos, val})
	}
	for i := uint64(0); i <= index; i++ {
		j := i + rng.Uint64N(p.n-i)
		vi, vj := get(i), get(j)
		set(i, vj)
		set(j, vi)
	}
	return get(index)
}
