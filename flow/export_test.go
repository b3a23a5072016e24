package flow

import "math"

// QueuedDeadlines is the length of t's deadline queue.
func (t *Table) QueuedDeadlines() int { return t.deadline.len() }

// NeverCompactDeadlines turns compactDeadlines off for t (tests compare).
func (t *Table) NeverCompactDeadlines() { t.compactAt = math.MaxInt }

// NoWarm turns warmNext off for t (tests compare).
func (t *Table) NoWarm() { t.noWarm = true }
