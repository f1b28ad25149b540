// Package permute gives, for every slot, a uniformly random ordering of the
// values 0..n-1 that every generator computes alike from a shared key.
// Generator k of a slot emits position k: distinct indices give distinct
// values, and each position of a uniform random permutation is uniform on
// 0..n-1, so the no-collision guarantee costs no uniformity. Together, the
// generators of a slot draw a uniform sample without replacement.
//
// Position k is computed by the first k+1 steps of a Fisher–Yates shuffle
// driven by ChaCha8 keyed with (key, slot): O(k), so a generator that emits
// several integers per slot (positions k·m … k·m+m−1) pays for them once.
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
	n     uint64
	key   [KeySize]byte
	moved moved // scratch of the shuffle
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

// At returns the value at position index (< n) of slot's ordering.
func (p *Perm) At(slot int64, index uint64) uint64 {
	return p.Range(slot, index, index+1, nil)[0]
}

// Range appends the values at positions from..to-1 of slot's ordering to
// dst: the first to steps of the shuffle, O(to). Not safe for concurrent use.
func (p *Perm) Range(slot int64, from, to uint64, dst []uint64) []uint64 {
	if from >= to || to > p.n {
		panic(fmt.Sprintf("permute: positions %d..%d outside 0..%d", from, to, p.n))
	}
	seed := p.key
	binary.LittleEndian.PutUint64(seed[24:], binary.LittleEndian.Uint64(seed[24:])^uint64(slot))
	rng := rand.New(rand.NewChaCha8(seed))
	p.moved.reset(p.n)
	for i := uint64(0); i < to; i++ {
		j := i + rng.Uint64N(p.n-i)
		vi, vj := p.moved.get(i), p.moved.get(j)
		p.moved.set(i, vj)
		p.moved.set(j, vi)
		if i >= from {
			dst = append(dst, vj)
		}
	}
	return dst
}

// moved records the positions a shuffle has changed (every other position
// still holds itself): a dense table stamped per use for small domains, a
// map for large ones.
type moved struct {
	vals   []uint64
	stamps []uint32
	stamp  uint32
	sparse map[uint64]uint64
}

const denseLimit = 1 << 20

func (m *moved) reset(n uint64) {
	if n > denseLimit {
		clear(m.sparse)
		if m.sparse == nil {
			m.sparse = map[uint64]uint64{}
		}
		return
	}
	if uint64(len(m.vals)) < n {
		m.vals, m.stamps, m.stamp = make([]uint64, n), make([]uint32, n), 0
	}
	m.stamp++
	if m.stamp == 0 { // wrapped: forget every old stamp
		clear(m.stamps)
		m.stamp = 1
	}
}

func (m *moved) get(pos uint64) uint64 {
	if m.sparse != nil {
		if v, ok := m.sparse[pos]; ok {
			return v
		}
		return pos
	}
	if m.stamps[pos] == m.stamp {
		return m.vals[pos]
	}
	return pos
}

func (m *moved) set(pos, val uint64) {
	if m.sparse != nil {
		m.sparse[pos] = val
		return
	}
	m.vals[pos], m.stamps[pos] = val, m.stamp
}
