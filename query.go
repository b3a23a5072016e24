package pcapflow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/query"
)

// Expr is a parsed filter (docs/query.md); its String is the normal form.
type Expr = query.Expr

// SyntaxError is a filter that does not parse; Offset is the byte offset
// of the fault and Caret shows it.
type SyntaxError = query.SyntaxError

// Parse parses a filter. The empty filter is nil: every flow.
func Parse(filter string) (Expr, error) { return query.Parse(filter) }

// IsKeyword reports whether s is a reserved word of the filter language
// (a command line can tell filter words from capture names with it).
func IsKeyword(s string) bool { return query.IsKeyword(s) }

// SortKey orders the flows of a Query.
type SortKey string

// The orders of flows (and of conversations, by their two directions'
// sums, earliest first and latest last).
const (
	SortID       SortKey = "id" // the default: first-packet order
	SortFirst    SortKey = "first"
	SortLast     SortKey = "last"
	SortPackets  SortKey = "packets"
	SortBytes    SortKey = "bytes"
	SortDuration SortKey = "duration"
)

// SortKeys are the valid SortKey values.
var SortKeys = []SortKey{SortID, SortFirst, SortLast, SortPackets, SortBytes, SortDuration}

// Query selects flows: a filter, then an order and a window of the
// result.
type Query struct {
	// Filter in the filter language; ignored when Expr is set. Empty:
	// every flow.
	Filter string
	Expr   Expr
	// Sort orders the result (default SortID); ties go by ID. Reverse
	// reverses the order.
	Sort    SortKey
	Reverse bool
	// Offset flows of the ordered result are passed over, then at most
	// Limit (0: all) are returned.
	Offset, Limit int
	// MinPackets drops flows (or conversations) with fewer packets.
	MinPackets uint64
}

func (q *Query) expr() (Expr, error) {
	if q.Expr != nil {
		return q.Expr, nil
	}
	return query.Parse(q.Filter)
}

// parse is expr for a listing: it also checks the order and window.
func (q *Query) parse() (Expr, error) {
	e, err := q.expr()
	if err == nil {
		err = q.check()
	}
	return e, err
}

func (q *Query) check() error {
	if q.Sort != "" && !slices.Contains(SortKeys, q.Sort) {
		return fmt.Errorf("unknown sort key %q (want id, first, last, packets, bytes or duration)", q.Sort)
	}
	if q.Offset < 0 || q.Limit < 0 {
		return errors.New("negative offset or limit")
	}
	return nil
}

// errStop ends a selection early.
var errStop = errors.New("stop")

// Flows returns the flows that match q, in q's order. A flow yielded is
// valid until the next one; copy it to keep it. Stopping the iteration
// early stops the selection.
func (a *Archive) Flows(ctx context.Context, q Query) iter.Seq2[*Flow, error] {
	return seqOf(func(yield func(*Flow, error) bool) error {
		e, err := q.parse()
		if err != nil {
			return err
		}
		keep := func(f *Flow) bool { return f.Packets >= q.MinPackets }
		if (q.Sort == "" || q.Sort == SortID) && !q.Reverse {
			// Streamed: the selection is in ID order.
			pg := q.pager()
			return query.Select(ctx, a.r, e, func(f *flow.Flow) error {
				if !keep(f) {
					return nil
				}
				show, more := pg.next()
				if !more {
					return errStop
				}
				if !show {
					return nil
				}
				if !yield(f, nil) {
					return errStop
				}
				return nil
			})
		}
		var flows []Flow
		err = query.Select(ctx, a.r, e, func(f *flow.Flow) error {
			if keep(f) {
				flows = append(flows, *f)
			}
			return nil
		})
		if err != nil {
			return err
		}
		sortBy(flows, func(f *Flow) (int64, uint64) { return flowKey(f, q.Sort), f.ID }, q.Reverse)
		yieldWindow(flows, q, yield)
		return nil
	})
}

// seqOf is the iterator of body, which yields and returns its error:
// the error is yielded last (errStop, an early stop, is not an error).
func seqOf[T any](body func(yield func(T, error) bool) error) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		if err := body(yield); err != nil && err != errStop {
			var none T
			yield(none, err)
		}
	}
}

// yieldWindow yields the page of items q's Offset and Limit select.
func yieldWindow[T any](items []T, q Query, yield func(*T, error) bool) {
	for i := range window(len(items), q.Offset, q.Limit) {
		if !yield(&items[i], nil) {
			return
		}
	}
}

// sortBy orders xs by key, ties by ID, reversed if asked.
func sortBy[T any](xs []T, key func(*T) (int64, uint64), reverse bool) {
	slices.SortStableFunc(xs, func(x, y T) int {
		kx, ix := key(&x)
		ky, iy := key(&y)
		c := cmp.Or(cmp.Compare(kx, ky), cmp.Compare(ix, iy))
		if reverse {
			return -c
		}
		return c
	})
}

func flowKey(f *Flow, k SortKey) int64 {
	switch k {
	case SortFirst:
		return f.First
	case SortLast:
		return f.Last
	case SortPackets:
		return int64(f.Packets)
	case SortBytes:
		return int64(f.Bytes)
	case SortDuration:
		return f.Last - f.First
	}
	return int64(f.ID)
}

// window yields the indexes offset.. of n items, at most limit of them.
// pager applies a Query's Offset and Limit to results that stream by.
type pager struct{ skip, left int }

func (q *Query) pager() pager {
	left := -1 // no limit
	if q.Limit > 0 {
		left = q.Limit
	}
	return pager{skip: q.Offset, left: left}
}

// next says whether the next result is shown, and whether any result
// after the ones skipped can still be (false: the limit is reached).
func (p *pager) next() (show, more bool) {
	switch {
	case p.left == 0:
		return false, false
	case p.skip > 0:
		p.skip--
		return false, true
	}
	if p.left > 0 {
		p.left--
	}
	return true, true
}

func window(n, offset, limit int) iter.Seq[int] {
	return func(yield func(int) bool) {
		end := n
		if limit > 0 {
			end = min(n, offset+limit)
		}
		for i := offset; i < end; i++ {
			if !yield(i) {
				return
			}
		}
	}
}

// IDs returns the IDs of the flows that match q's filter, in ID order
// (q's order and window do not apply).
func (a *Archive) IDs(ctx context.Context, q Query) ([]uint64, error) {
	e, err := q.expr()
	if err != nil {
		return nil, err
	}
	var ids []uint64
	err = query.Select(ctx, a.r, e, func(f *flow.Flow) error {
		if f.Packets >= q.MinPackets {
			ids = append(ids, f.ID)
		}
		return nil
	})
	return ids, err
}

// Flow returns the flow with the given ID, or ErrNoFlow.
func (a *Archive) Flow(ctx context.Context, id uint64) (*Flow, error) {
	if id == 0 || id > a.r.NumFlows() {
		return nil, fmt.Errorf("flow %d: %w", id, ErrNoFlow)
	}
	var out *Flow
	err := a.r.Flows(ctx, []uint64{id}, func(f *flow.Flow) error {
		c := *f
		out = &c
		return nil
	})
	if err == nil && out == nil {
		err = fmt.Errorf("flow %d: %w", id, ErrNoFlow)
	}
	return out, err
}

// Conversations returns one Conversation per connection of which at
// least one direction matches q's filter (its other direction is shown
// too), in q's order by the connection's sums: packets and bytes of both
// directions, the earliest first, the latest last. Rows of conversations
// that differ only in VLAN or tunnel carry those in their flows' keys.
func (a *Archive) Conversations(ctx context.Context, q Query) iter.Seq2[*Conversation, error] {
	return seqOf(func(yield func(*Conversation, error) bool) error {
		e, err := q.parse()
		if err != nil {
			return err
		}
		if e == nil && (q.Sort == "" || q.Sort == SortID) && !q.Reverse {
			return a.allConversations(ctx, q, yield)
		}
		byID := map[uint64]*Flow{}
		keep := func(f *flow.Flow) error { // a copy: f is reused
			c := *f
			byID[f.ID] = &c
			return nil
		}
		var order []uint64
		err = query.Select(ctx, a.r, e, func(f *flow.Flow) error {
			order = append(order, f.ID)
			return keep(f)
		})
		if err != nil {
			return err
		}
		// The peers that did not match themselves.
		var missing []uint64
		for _, id := range order {
			if p := byID[id].Peer; p != 0 && byID[p] == nil {
				missing = append(missing, p)
			}
		}
		slices.Sort(missing)
		missing = slices.Compact(missing)
		if len(missing) > 0 { // (no IDs would mean every flow)
			if err := a.r.Flows(ctx, missing, keep); err != nil {
				return err
			}
		}
		var convs []Conversation
		for _, id := range order {
			f := byID[id]
			if f.Peer != 0 && f.Peer < f.ID {
				if _, matched := slices.BinarySearch(order, f.Peer); matched {
					continue // with its peer
				}
			}
			c := Conversation{ID: f.ID, A: f}
			if f.Peer != 0 {
				c.B = byID[f.Peer]
				if f.Peer < f.ID {
					c.ID, c.A, c.B = f.Peer, c.B, f
				}
			}
			if convPackets(&c) < q.MinPackets {
				continue
			}
			convs = append(convs, c)
		}
		if q.Sort != "" && q.Sort != SortID || q.Reverse {
			sortBy(convs, func(c *Conversation) (int64, uint64) { return convKey(c, q.Sort), c.ID }, q.Reverse)
		}
		yieldWindow(convs, q, yield)
		return nil
	})
}

// allConversations yields every conversation in ID order as its flows
// stream by, holding only the conversations whose second flow has not
// come yet: exporting a 1.2 M-flow archive held every flow in memory.
func (a *Archive) allConversations(ctx context.Context, q Query, yield func(*Conversation, error) bool) error {
	var queue []*Conversation             // in ID order; the head goes out once complete
	waiting := map[uint64]*Conversation{} // by the ID of the peer it waits for
	pg := q.pager()
	emit := func(c *Conversation) bool {
		if convPackets(c) < q.MinPackets {
			return true
		}
		show, more := pg.next()
		if !show {
			return more
		}
		return yield(c, nil)
	}
	drain := func(all bool) bool {
		for len(queue) > 0 && (all || queue[0].A.Peer == 0 || queue[0].B != nil) {
			c := queue[0]
			queue[0] = nil
			queue = queue[1:]
			if !emit(c) {
				return false
			}
		}
		return true
	}
	err := a.r.Flows(ctx, nil, func(f *flow.Flow) error {
		fc := *f
		if c := waiting[f.ID]; c != nil {
			delete(waiting, f.ID)
			c.B = &fc
		} else {
			c := &Conversation{ID: f.ID, A: &fc}
			if f.Peer > f.ID {
				waiting[f.Peer] = c
			}
			queue = append(queue, c)
		}
		if !drain(false) {
			return errStop
		}
		return nil
	})
	if err == nil {
		drain(true)
	}
	return err
}

func convPackets(c *Conversation) uint64 {
	n := c.A.Packets
	if c.B != nil {
		n += c.B.Packets
	}
	return n
}

func convKey(c *Conversation, k SortKey) int64 {
	first, last := c.A.First, c.A.Last
	var bytes uint64 = c.A.Bytes
	if c.B != nil {
		first, last = min(first, c.B.First), max(last, c.B.Last)
		bytes += c.B.Bytes
	}
	switch k {
	case SortFirst:
		return first
	case SortLast:
		return last
	case SortPackets:
		return int64(convPackets(c))
	case SortBytes:
		return int64(bytes)
	case SortDuration:
		return last - first
	}
	return int64(c.ID)
}

// Counts are what Count reports.
type Counts struct {
	Flows uint64 `json:"flows"`
	// Packets and Bytes count each capture record once: a frame in a
	// tunnel is in the tunnel's flow and in the flow it carries, and
	// counts once when both match.
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Count counts the flows that match q's filter (MinPackets applies; the
// order and window do not), and their packets and bytes.
func (a *Archive) Count(ctx context.Context, q Query) (Counts, error) {
	e, err := q.expr()
	if err != nil {
		return Counts{}, err
	}
	var c Counts
	// A flow inside a tunnel is carried by the frames of its outer flow
	// (the one that carried its first packet; it has a smaller ID, so it
	// is seen first): when both match, the inner one adds no records.
	selected := make([]uint64, a.r.NumFlows()/64+1)
	isSel := func(id uint64) bool {
		return id/64 < uint64(len(selected)) && selected[id/64]&(1<<(id%64)) != 0
	}
	err = query.Select(ctx, a.r, e, func(f *flow.Flow) error {
		if f.Packets < q.MinPackets {
			return nil
		}
		c.Flows++
		if f.ID/64 < uint64(len(selected)) {
			selected[f.ID/64] |= 1 << (f.ID % 64)
		}
		if f.Depth > 0 && isSel(f.Outer) {
			return nil
		}
		c.Packets += f.Packets
		c.Bytes += f.Bytes
		return nil
	})
	return c, err
}

// Plan is how a filter is answered, as Explain reports it.
type Plan struct {
	Filter   string   // the normal form ("" for every flow)
	Source   string   // "index DIR (N flows)" or "scan of N capture(s) (N flows)"
	Steps    []string // lookups and checks, indented by nesting
	Matching int      // flows that match
}

// Explain parses q's filter, runs it, and says how it was answered.
func (a *Archive) Explain(ctx context.Context, q Query) (*Plan, error) {
	e, err := q.expr()
	if err != nil {
		return nil, err
	}
	p := &Plan{}
	if e != nil {
		p.Filter = e.String()
	}
	if a.dir != "" {
		p.Source = fmt.Sprintf("index %s (%d flows)", a.dir, a.r.NumFlows())
	} else {
		p.Source = fmt.Sprintf("scan of %d capture(s) (%d flows); no index, so every flow is checked", len(a.names), a.r.NumFlows())
	}
	tr := &query.Trace{}
	err = query.SelectTrace(ctx, a.r, e, tr, func(*flow.Flow) error { p.Matching++; return nil })
	p.Steps = tr.Lines
	return p, err
}
