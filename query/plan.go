package query

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/index"
)

// set is a sorted set of flow IDs, or every flow.
type set struct {
	all bool
	ids []uint64
}

// Trace records how a plan ran, for explain.
type Trace struct {
	Lines []string
	depth int
}

func (t *Trace) add(format string, args ...any) {
	if t != nil {
		t.Lines = append(t.Lines, strings.Repeat("  ", t.depth)+fmt.Sprintf(format, args...))
	}
}

type planner struct {
	ctx   context.Context
	r     index.Reader
	n     uint64
	trace *Trace
}

// skipFactor: in an and, a lookup expected to return this many times
// more flows than the candidates found so far is not read; the
// candidates are checked against their records instead.
const skipFactor = 16

// Select runs e against r and calls fn for each matching flow, in ID
// order. A nil e matches every flow. The *Flow is valid only during fn.
func Select(ctx context.Context, r index.Reader, e Expr, fn func(*flow.Flow) error) error {
	return SelectTrace(ctx, r, e, nil, fn)
}

// SelectTrace is Select that also records the plan in tr (for explain).
func SelectTrace(ctx context.Context, r index.Reader, e Expr, tr *Trace, fn func(*flow.Flow) error) error {
	if e == nil {
		tr.add("all flows (no filter): %d", r.NumFlows())
		return r.Flows(ctx, nil, fn)
	}
	if !r.Indexed() {
		// A scan's in-memory index has no attribute keys: checking every
		// record is what a lookup would do anyway.
		tr.add("scan: every flow record checked against the filter")
		return r.Flows(ctx, nil, func(f *flow.Flow) error {
			if e.Match(f) {
				return fn(f)
			}
			return nil
		})
	}
	p := &planner{ctx: ctx, r: r, n: r.NumFlows(), trace: tr}
	s, exact, err := p.eval(e)
	if err != nil {
		return err
	}
	var ids []uint64
	if !s.all {
		ids = s.ids
		if ids == nil {
			ids = []uint64{}
		}
	}
	if exact {
		tr.add("result: %s, exact from the index", p.size(s))
	} else {
		tr.add("result: %s candidates, each checked against its flow record", p.size(s))
	}
	if len(ids) == 0 && !s.all {
		return nil
	}
	return r.Flows(ctx, ids, func(f *flow.Flow) error {
		if exact || e.Match(f) {
			return fn(f)
		}
		return nil
	})
}

// SelectIDs returns the IDs of the matching flows.
func SelectIDs(ctx context.Context, r index.Reader, e Expr) ([]uint64, error) {
	var ids []uint64
	err := Select(ctx, r, e, func(f *flow.Flow) error {
		ids = append(ids, f.ID)
		return nil
	})
	return ids, err
}

func (p *planner) size(s set) string {
	if s.all {
		return fmt.Sprintf("all %d flows", p.n)
	}
	return fmt.Sprintf("%d flows", len(s.ids))
}

// estimate is the planner's guess of how many flows e selects.
func (p *planner) estimate(e Expr) uint64 {
	switch e := e.(type) {
	case *And:
		return min(p.estimate(e.L), p.estimate(e.R))
	case *Or:
		return min(p.n, p.estimate(e.L)+p.estimate(e.R))
	case *Not:
		return p.n
	case *FlowRange:
		if e.Lo > p.n {
			return 0
		}
		return min(e.Hi, p.n) - e.Lo + 1
	case *IPVersion:
		return p.n
	}
	ls, ok := lookups(e)
	if !ok {
		return p.n
	}
	var n uint64
	for _, l := range ls {
		c, err := p.r.Estimate(p.ctx, l)
		if err != nil {
			return p.n
		}
		n += c
	}
	return min(n, p.n)
}

func (p *planner) eval(e Expr) (set, bool, error) {
	switch e := e.(type) {
	case *And:
		return p.and(flattenAnd(e, nil))
	case *Or:
		p.trace.add("or")
		p.enter()
		l, le, err := p.eval(e.L)
		if err != nil {
			return set{}, false, err
		}
		r, re, err := p.eval(e.R)
		p.leave()
		if err != nil {
			return set{}, false, err
		}
		return union(l, r), le && re, nil
	case *Not:
		p.trace.add("not")
		p.enter()
		s, exact, err := p.eval(e.X)
		p.leave()
		if err != nil || !exact {
			if err == nil {
				p.trace.add("(inexact under not: every flow becomes a candidate)")
			}
			return set{all: true}, false, err
		}
		return p.complement(s), true, nil
	case *FlowRange:
		s := set{}
		for id := e.Lo; id <= e.Hi && id <= p.n; id++ {
			s.ids = append(s.ids, id)
		}
		p.trace.add("%s: ID range, %d flows", e, len(s.ids))
		return s, true, nil
	case *IPVersion:
		p.trace.add("%s: every flow checked", e)
		return set{all: true}, false, nil
	case *Nesting:
		if !e.Inner { // outer: the flows not in a tunnel
			s, exact, err := p.eval(&Nesting{Inner: true})
			if err != nil || !exact {
				return set{all: true}, false, err
			}
			return p.complement(s), true, nil
		}
	}
	ls, ok := lookups(e)
	if !ok {
		p.trace.add("%s: every flow checked", e)
		return set{all: true}, false, nil
	}
	// "src and dst" needs both lookups; every other qualifier either.
	both := dirOf(e) == DirBoth
	var out set
	exact := true
	for i, l := range ls {
		ids, ex, err := p.r.Lookup(p.ctx, l)
		if err != nil {
			return set{}, false, err
		}
		switch {
		case both && i > 0:
			out = intersect(out, set{ids: ids})
		default:
			out = union(out, set{ids: ids})
		}
		exact = exact && ex
	}
	how := "exact"
	if !exact {
		how = "bucketed, boundary flows checked"
	}
	p.trace.add("%s: %d lookup(s) → %d flows (%s)", e, len(ls), len(out.ids), how)
	return out, exact, nil
}

func (p *planner) enter() {
	if p.trace != nil {
		p.trace.depth++
	}
}

func (p *planner) leave() {
	if p.trace != nil {
		p.trace.depth--
	}
}

func flattenAnd(e Expr, out []Expr) []Expr {
	if a, ok := e.(*And); ok {
		return flattenAnd(a.R, flattenAnd(a.L, out))
	}
	return append(out, e)
}

// and intersects its terms, most selective first, and leaves to the
// residual check the terms that would cost more to look up than to check.
func (p *planner) and(terms []Expr) (set, bool, error) {
	type term struct {
		e   Expr
		est uint64
	}
	ts := make([]term, len(terms))
	for i, e := range terms {
		ts[i] = term{e, p.estimate(e)}
	}
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].est < ts[j].est })
	p.trace.add("and (terms by estimated flows: most selective first)")
	p.enter()
	defer p.leave()
	cur := set{all: true}
	exact := true
	for _, t := range ts {
		if !cur.all && len(cur.ids) == 0 {
			p.trace.add("%s: not looked up (no candidates left)", t.e)
			continue
		}
		if !cur.all && t.est > skipFactor*uint64(len(cur.ids)) {
			p.trace.add("%s: est. %d flows, not looked up; checked on the %d candidates", t.e, t.est, len(cur.ids))
			exact = false
			continue
		}
		s, ex, err := p.eval(t.e)
		if err != nil {
			return set{}, false, err
		}
		cur = intersect(cur, s)
		exact = exact && ex
	}
	return cur, exact, nil
}

func (p *planner) complement(s set) set {
	if s.all {
		return set{}
	}
	out := set{ids: make([]uint64, 0, p.n-uint64(min(uint64(len(s.ids)), p.n)))}
	j := 0
	for id := uint64(1); id <= p.n; id++ {
		if j < len(s.ids) && s.ids[j] == id {
			j++
			continue
		}
		out.ids = append(out.ids, id)
	}
	return out
}

func union(a, b set) set {
	if a.all || b.all {
		return set{all: true}
	}
	return set{ids: index.UnionIDs(a.ids, b.ids)}
}

func intersect(a, b set) set {
	if a.all {
		return b
	}
	if b.all {
		return a
	}
	if len(a.ids) > len(b.ids) {
		a, b = b, a
	}
	out := make([]uint64, 0, len(a.ids))
	if len(b.ids) > 32*len(a.ids) {
		for _, id := range a.ids { // gallop: the small side into the large one
			if _, ok := slices.BinarySearch(b.ids, id); ok {
				out = append(out, id)
			}
		}
		return set{ids: out}
	}
	i, j := 0, 0
	for i < len(a.ids) && j < len(b.ids) {
		switch {
		case a.ids[i] < b.ids[j]:
			i++
		case a.ids[i] > b.ids[j]:
			j++
		default:
			out = append(out, a.ids[i])
			i++
			j++
		}
	}
	return set{ids: out}
}

func dirOf(e Expr) Dir {
	switch e := e.(type) {
	case *Net:
		return e.Dir
	case *Port:
		return e.Dir
	case *Ether:
		return e.Dir
	}
	return DirEither
}
