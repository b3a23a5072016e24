package flow

import "math"

// QueuedDeadlines is the length of t's deadline queue.
func (t *Table) QueuedDeadlines() int { return t.deadline.len() }

// NeverCompactDeadlines turns compactDeadlines off for t (tests compare).
func (t *Table) NeverCompactDeadlines() { t.compactAt = math.MaxInt }

// NoWarm turns warmNext off for t (tests compare).
func (t *Table) NoWarm() { t.noWarm = true }

// ReverseHash is reverseHash (tests check it against hashing the
// reverse key).
func ReverseHash(k *Key) (got, want uint64) {
	r := k.Reverse()
	return reverseHash(k, &r, hashKey(k)), hashKey(&r)
}

// SortIDSlots sorts (ID, slot) pairs by ID as LiveFlows does.
func SortIDSlots(ids []uint64) []uint64 {
	ls := make([]idSlot, len(ids))
	for i, id := range ids {
		ls[i] = idSlot{id, int32(i)}
	}
	ls = sortIDSlots(ls)
	out := make([]uint64, len(ls))
	for i, l := range ls {
		if ids[l.fi] != l.id {
			return nil // the slot no longer goes with its ID
		}
		out[i] = l.id
	}
	return out
}
