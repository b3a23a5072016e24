package flow

import (
	"encoding/binary"
	"math/bits"

	"github.com/pcapflow/pcapflow/pcapio"
)

// keyIndex maps keys to the table's current flow for them. It is an
// open-addressing table of 8-byte slots (32-bit hash tag, flow index+1),
// probed linearly from the slot the tag itself selects, so that growing
// the table needs no key: a lookup touches one cache line of slots and then the
// flow record, which the caller needs anyway. (A Go map keyed by the
// 52-byte Key costs an extra cache miss per packet; with a million flows
// that was a third of the ingest time.)
type keyIndex struct {
	slots []uint64
	n     int
}

// hashKey hashes k so that the two directions of a conversation share
// a home slot: the endpoints are hashed in a fixed order, and the top
// bit, which is the tag's top bit and never in a slot mask (the table
// holds at most 2^31 slots), says which endpoint came first. A new
// flow's lookup of its reverse (every new flow makes one) then probes
// the cache line of slots its own lookup just read, and its hash is
// the key's with that bit flipped (reverseHash) instead of a second
// hash of a reversed key.
func hashKey(k *Key) uint64 {
	const (
		c1 = 0xa0761d6478bd642f
		c2 = 0xe7037ed1a0b428db
		c3 = 0x8ebc6af09c88c6e3
		c4 = 0x589965cc75374cc3
	)
	mix := func(a, b uint64) uint64 {
		hi, lo := bits.Mul64(a, b)
		return hi ^ lo
	}
	s0, s1 := binary.LittleEndian.Uint64(k.Src[:8]), binary.LittleEndian.Uint64(k.Src[8:])
	d0, d1 := binary.LittleEndian.Uint64(k.Dst[:8]), binary.LittleEndian.Uint64(k.Dst[8:])
	sp, dp := k.SrcPort, k.DstPort
	swap := s0 > d0 || s0 == d0 && (s1 > d1 || s1 == d1 && sp > dp)
	if swap {
		s0, s1, sp, d0, d1, dp = d0, d1, dp, s0, s1, sp
	}
	p := uint64(sp) | uint64(dp)<<16 | uint64(k.Proto)<<32 | uint64(k.IPVersion)<<40 | uint64(k.NumVLAN)<<48
	v := uint64(k.VLAN[0]) | uint64(k.VLAN[1])<<16 | uint64(k.VLAN[2])<<32 | uint64(k.VLAN[3])<<48
	h := mix(s0^c1, s1^c2)
	h = mix(h^d0, d1^c3)
	h = mix(h^p, v^uint64(k.Tunnel)<<32^uint64(k.TunnelID)^uint64(k.TunnelType)<<56^c4)
	h = mix(h^c1, c2) &^ (1 << 63)
	if swap {
		h |= 1 << 63
	}
	return h
}

// reverseHash is hashKey(&r) for r = k.Reverse(), given h = hashKey(k).
// Where the reverse swaps the endpoints, the two hashes differ in their
// top bit alone, unless the endpoints are the same (then r is k); an
// ICMP message's reverse changes its type, so its hash is computed.
func reverseHash(k, r *Key, h uint64) uint64 {
	switch {
	case k.Proto == pcapio.ProtoICMP || k.Proto == pcapio.ProtoICMPv6:
		return hashKey(r)
	case k.Src == k.Dst && k.SrcPort == k.DstPort:
		return h
	}
	return h ^ 1<<63
}

func (x *keyIndex) init() { x.slots = make([]uint64, 1<<16) }

// The table holds at most 2^31 slots: tags are 32 bits.

// Hash is the hash the table files k under (HashOf a packet of k).
func (k *Key) Hash() uint64 { return hashKey(k) }

// get returns the flow stored for k, or -1.
func (t *Table) get(k *Key) int32 { return t.getHashed(k, hashKey(k)) }

// getHashed is get for a key whose hash is h.
func (t *Table) getHashed(k *Key, h uint64) int32 {
	tag := h >> 32
	mask := uint64(len(t.keys.slots) - 1)
	for i := tag & mask; ; i = (i + 1) & mask {
		s := t.keys.slots[i]
		if s == 0 {
			return -1
		}
		if s>>32 == tag {
			if fi := int32(uint32(s)) - 1; t.Flow(fi).Key == *k {
				return fi
			}
		}
	}
}

// keyedSlots is the set of slots whose flow is the current one of its
// key, as a bitmap by slot: one pass over the index rather than a
// lookup per flow, which on the 270 k live flows of the 2 GB real
// capture missed the cache twice each (85 ms of every commit).
func (t *Table) keyedSlots() []uint64 {
	set := make([]uint64, (len(t.chunks)<<chunkBits+63)/64)
	for _, s := range t.keys.slots {
		if s != 0 {
			fi := uint32(s) - 1
			set[fi>>6] |= 1 << (fi & 63)
		}
	}
	return set
}

// put makes fi the current flow of its key.
func (t *Table) put(fi int32) {
	x := &t.keys
	if 2*(x.n+1) > len(x.slots) {
		t.grow()
	}
	k := &t.Flow(fi).Key
	tag := hashKey(k) >> 32
	mask := uint64(len(x.slots) - 1)
	for i := tag & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			x.slots[i] = tag<<32 | uint64(fi+1)
			x.n++
			return
		}
		if s>>32 == tag && t.Flow(int32(uint32(s))-1).Key == *k {
			x.slots[i] = tag<<32 | uint64(fi+1)
			return
		}
	}
}

// del removes fi from the index if its key maps to it. Linear probing
// keeps every key reachable from its home slot without gaps, so the
// entries after the hole move back into it where their home allows
// (Knuth's algorithm R): no tombstones accumulate as flows end.
func (t *Table) del(fi int32) {
	x := &t.keys
	k := &t.Flow(fi).Key
	tag := hashKey(k) >> 32
	mask := uint64(len(x.slots) - 1)
	i := tag & mask
	for {
		s := x.slots[i]
		if s == 0 {
			return // not indexed (a newer flow took the key)
		}
		if s == tag<<32|uint64(fi+1) {
			break
		}
		i = (i + 1) & mask
	}
	x.n--
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		s := x.slots[j]
		if s == 0 {
			break
		}
		// The entry at j may move to the hole at i unless its home slot
		// lies cyclically in (i, j].
		if home := (s >> 32) & mask; (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			x.slots[i] = s
			i = j
		}
	}
	x.slots[i] = 0
}

func (t *Table) grow() {
	old := t.keys.slots
	t.keys.slots = make([]uint64, 2*len(old))
	mask := uint64(len(t.keys.slots) - 1)
	for _, s := range old {
		if s == 0 {
			continue
		}
		for i := (s >> 32) & mask; ; i = (i + 1) & mask {
			if t.keys.slots[i] == 0 {
				t.keys.slots[i] = s
				break
			}
		}
	}
}

// HashOf is the hash the table looks up the flow of p by, when p is not
// carried in a tunnel (see Prefetch). It may be computed anywhere, on
// any goroutine: it reads only p.
func HashOf(p *pcapio.Packet) uint64 {
	k := KeyOf(p)
	return hashKey(&k)
}

// Prefetch reads the memory that adding packets with these hashes (of
// HashOf) will read first: the index slot each probes first, the flow
// stored there and its connection. It changes nothing; its only effect
// is that the packets' cache misses are taken together, overlapping,
// rather than one after the other inside Add. With hundreds of
// thousands of live flows nearly every packet misses twice
// (docs/BENCHMARKS.md), and a core can wait for many independent misses
// at once but not for a dependent pair faster than one after the other.
// So the slots are read in one loop, the flows, whose addresses the
// slots give, in a second, and their connections in a third. Callers
// pass a few packets ahead of the ones they add (16 or so: the lines
// must still be cached when Add comes to them).
func (t *Table) Prefetch(hashes []uint64) {
	const most = 32 // a group larger than this is cut to it
	var slots [most]uint64
	hashes = hashes[:min(len(hashes), most)]
	mask := uint64(len(t.keys.slots) - 1)
	for i, h := range hashes {
		j := (h >> 32) & mask
		slots[i] = t.keys.slots[j]
		// Both directions of a conversation share a home slot: the flow
		// may be in the next one, which is nearly always in the same line.
		if s := slots[i]; s != 0 && s>>32 != h>>32 {
			slots[i] = t.keys.slots[(j+1)&mask]
		}
	}
	var sum uint64
	var conns [most]int32
	for i, h := range hashes {
		conns[i] = -1
		if s := slots[i]; s != 0 && s>>32 == h>>32 {
			f := t.Flow(int32(uint32(s)) - 1)
			sum += uint64(f.Key.Src[0]) + f.Packets
			conns[i] = f.conn
		}
	}
	for _, ci := range conns[:len(hashes)] {
		if ci >= 0 {
			sum += uint64(t.conn(ci).serial)
		}
	}
	t.prefetched += sum // so that the reads are not optimised away
}
