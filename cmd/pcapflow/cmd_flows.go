package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/query"
)

const flowsUsage = `usage: pcapflow flows [-i INDEX] [CAPTURE...] [options] [FILTER...]

List the flows (one line per direction) that match FILTER, from the index
beside the capture (CAPTURE.pfidx) or -i INDEX when there is one, else by
scanning the captures. Several captures form one stream of flows.

options:
  -F text|json|csv   output format (default text)
  --sort id|first|packets|bytes   order (default id)
  --reverse          reverse the order
  --limit N          print at most N flows
  --min-packets N    only flows with at least N packets
  --bidir            one row per conversation (both directions)
  -i INDEX           answer from this index
  --idle-timeout D   scan mode: a key idle for D starts a new flow
  --progress         show progress on stderr even when it is not a terminal
  --scan             read the captures even when an index is beside them

FILTER is the filter language of docs/query.md, e.g. 'port 80 and not host 10.0.0.1'.
`

const countUsage = `usage: pcapflow count [-i INDEX] [CAPTURE...] [-F text|json] [FILTER...]

Print how many flows match FILTER, and the packets (capture records) and
bytes (wire lengths) of those flows, each record counted once: a frame
in a tunnel belongs to the tunnel's flow and to the flow it carries, and
counts once when both match. -F json prints {"flows":N,"packets":N,"bytes":N}.
`

const explainUsage = `usage: pcapflow explain [-i INDEX] [CAPTURE...] FILTER...

Print the filter in normal form and how it is answered: which index
lookups run, how many flows each gives, and what is checked on records.
`

type flowsFlags struct {
	commonFlags
	format     string
	sortBy     string
	reverse    bool
	limit      int
	minPackets uint64
	bidir      bool
}

// parseFilter parses a filter; a syntax error is a usage error that
// shows the caret.
func parseFilter(s string) (query.Expr, error) {
	e, err := query.Parse(s)
	var se *query.SyntaxError
	if errors.As(err, &se) {
		return nil, usagef("%s\n%s", se.Msg, se.Caret())
	}
	return e, err
}

// prepare parses the command line of a query command and opens the
// source: the shared first half of flows, count, explain, extract, streams.
func prepare(ctx context.Context, e *env, fs *flag.FlagSet, cf *commonFlags, args []string, keepPackets bool) (*source, query.Expr, error) {
	cf.register(fs)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}
	cf.noteSet(fs)
	captures, filter := splitCaptures(rest)
	expr, err := parseFilter(filter)
	if err != nil {
		// A mistyped capture path reads as a filter that does not parse:
		// say what is wrong with it as a file instead.
		if first, _, _ := strings.Cut(filter, " "); looksLikePath(first) {
			if _, serr := os.Stat(first); errors.Is(serr, os.ErrNotExist) {
				return nil, nil, fmt.Errorf("%s: no such capture file", first)
			} else if serr != nil {
				return nil, nil, serr
			}
		}
		return nil, nil, err
	}
	src, err := openSource(ctx, e, cf, captures, keepPackets)
	if err != nil {
		return nil, nil, err
	}
	return src, expr, nil
}

// finish reports a scan that ended early: its results stand, but the
// run fails.
func (s *source) finish(err error) error {
	if err == nil && s.scanErr != nil {
		return s.scanErr
	}
	return err
}

func runFlows(ctx context.Context, e *env, args []string) error {
	var ff flowsFlags
	fs := flag.NewFlagSet("flows", flag.ContinueOnError)
	fs.StringVar(&ff.format, "F", "text", "")
	fs.StringVar(&ff.sortBy, "sort", "id", "")
	fs.BoolVar(&ff.reverse, "reverse", false, "")
	fs.IntVar(&ff.limit, "limit", 0, "")
	fs.Uint64Var(&ff.minPackets, "min-packets", 0, "")
	fs.BoolVar(&ff.bidir, "bidir", false, "")
	src, expr, err := prepare(ctx, e, fs, &ff.commonFlags, args, false)
	if err != nil {
		return err
	}
	defer src.Close()
	format := flow.Format(ff.format)
	switch ff.sortBy {
	case "id", "first", "packets", "bytes":
	default:
		return usagef("--sort %q: want id, first, packets or bytes", ff.sortBy)
	}
	if ff.bidir {
		return src.finish(writeConversations(ctx, e, src, expr, &ff, format))
	}
	w, err := flow.NewWriter(e.stdout, format, src.captureName)
	if err != nil {
		return usagef("%v", err)
	}
	keep := func(f *flow.Flow) bool { return f.Packets >= ff.minPackets }
	if ff.sortBy == "id" && !ff.reverse {
		n := 0
		errLimit := errors.New("limit")
		err := query.Select(ctx, src.r, expr, func(f *flow.Flow) error {
			if !keep(f) {
				return nil
			}
			if ff.limit > 0 && n >= ff.limit {
				return errLimit
			}
			n++
			return w.Write(f)
		})
		if err != nil && err != errLimit {
			return err
		}
		return src.finish(w.Flush())
	}
	var flows []flow.Flow
	err = query.Select(ctx, src.r, expr, func(f *flow.Flow) error {
		if keep(f) {
			flows = append(flows, *f)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sortFlows(flows, ff.sortBy, ff.reverse)
	if ff.limit > 0 && len(flows) > ff.limit {
		flows = flows[:ff.limit]
	}
	for i := range flows {
		if err := w.Write(&flows[i]); err != nil {
			return err
		}
	}
	return src.finish(w.Flush())
}

func sortFlows(flows []flow.Flow, by string, reverse bool) {
	less := func(a, b *flow.Flow) bool {
		switch by {
		case "first":
			if a.First != b.First {
				return a.First < b.First
			}
		case "packets":
			if a.Packets != b.Packets {
				return a.Packets < b.Packets
			}
		case "bytes":
			if a.Bytes != b.Bytes {
				return a.Bytes < b.Bytes
			}
		}
		return a.ID < b.ID
	}
	sort.SliceStable(flows, func(i, j int) bool {
		if reverse {
			return less(&flows[j], &flows[i])
		}
		return less(&flows[i], &flows[j])
	})
}

// writeConversations prints one row per conversation that has at least
// one matching direction; its other direction is shown even when it does
// not match itself.
func writeConversations(ctx context.Context, e *env, src *source, expr query.Expr, ff *flowsFlags, format flow.Format) error {
	cw, err := flow.NewConvWriter(e.stdout, format)
	if err != nil {
		return usagef("%v", err)
	}
	byID := map[uint64]*flow.Flow{}
	var order []uint64
	err = query.Select(ctx, src.r, expr, func(f *flow.Flow) error {
		c := *f
		byID[f.ID] = &c
		order = append(order, f.ID)
		return nil
	})
	if err != nil {
		return err
	}
	var missing []uint64
	for _, id := range order {
		if p := byID[id].Peer; p != 0 && byID[p] == nil {
			missing = append(missing, p)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	if len(missing) > 0 { // (no IDs would mean every flow to Flows)
		err = src.r.Flows(ctx, dedupe(missing), func(f *flow.Flow) error {
			c := *f
			byID[f.ID] = &c
			return nil
		})
		if err != nil {
			return err
		}
	}
	var convs []flow.Conversation
	for _, id := range order {
		f := byID[id]
		if f.Peer != 0 && f.Peer < f.ID {
			if _, matched := indexOf(order, f.Peer); matched {
				continue // printed with its peer
			}
		}
		c := flow.Conversation{ID: f.ID, A: f}
		if f.Peer != 0 {
			c.B = byID[f.Peer]
			if f.Peer < f.ID {
				c.ID, c.A, c.B = f.Peer, c.B, f
			}
		}
		if c.A.Packets+packetsOf(c.B) < ff.minPackets {
			continue
		}
		convs = append(convs, c)
	}
	sort.SliceStable(convs, func(i, j int) bool { return convs[i].ID < convs[j].ID })
	if ff.limit > 0 && len(convs) > ff.limit {
		convs = convs[:ff.limit]
	}
	for i := range convs {
		if err := cw.Write(&convs[i]); err != nil {
			return err
		}
	}
	return cw.Flush()
}

func packetsOf(f *flow.Flow) uint64 {
	if f == nil {
		return 0
	}
	return f.Packets
}

func indexOf(sorted []uint64, id uint64) (int, bool) {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i] >= id })
	return i, i < len(sorted) && sorted[i] == id
}

func dedupe(ids []uint64) []uint64 {
	out := ids[:0]
	for i, id := range ids {
		if i == 0 || id != ids[i-1] {
			out = append(out, id)
		}
	}
	return out
}

func runCount(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var format string
	fs := flag.NewFlagSet("count", flag.ContinueOnError)
	fs.StringVar(&format, "F", "text", "")
	src, expr, err := prepare(ctx, e, fs, &cf, args, false)
	if err != nil {
		return err
	}
	defer src.Close()
	// packets and bytes count each capture record once: a flow inside a
	// tunnel is carried by the frames of its outer flow, so when both are
	// selected the inner one adds nothing. (Outer is the flow that carried
	// the inner flow's first packet; IDs come in first-packet order, so it
	// is seen first.)
	var flows, packets, bytes uint64
	selected := make([]uint64, src.r.NumFlows()/64+1)
	err = query.Select(ctx, src.r, expr, func(f *flow.Flow) error {
		flows++
		if f.ID/64 < uint64(len(selected)) {
			selected[f.ID/64] |= 1 << (f.ID % 64)
		}
		if f.Depth > 0 && f.Outer/64 < uint64(len(selected)) && selected[f.Outer/64]&(1<<(f.Outer%64)) != 0 {
			return nil
		}
		packets += f.Packets
		bytes += f.Bytes
		return nil
	})
	if err != nil {
		return err
	}
	switch format {
	case "json":
		fmt.Fprintf(e.stdout, "{\"flows\":%d,\"packets\":%d,\"bytes\":%d}\n", flows, packets, bytes)
	case "text":
		fmt.Fprintf(e.stdout, "flows %d packets %d bytes %d\n", flows, packets, bytes)
	default:
		return usagef("-F %q: want text or json", format)
	}
	return src.finish(nil)
}

func runExplain(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	src, expr, err := prepare(ctx, e, fs, &cf, args, false)
	if err != nil {
		return err
	}
	defer src.Close()
	if expr == nil {
		fmt.Fprintln(e.stdout, "filter: (none: every flow)")
	} else {
		fmt.Fprintf(e.stdout, "filter: %s\n", expr)
	}
	if src.fromIndex != "" {
		fmt.Fprintf(e.stdout, "source: index %s (%d flows)\n", src.fromIndex, src.r.NumFlows())
	} else {
		fmt.Fprintf(e.stdout, "source: scan of %d capture(s) (%d flows); no index, so every flow is checked\n", len(src.names), src.r.NumFlows())
	}
	tr := &query.Trace{}
	n := 0
	err = query.SelectTrace(ctx, src.r, expr, tr, func(*flow.Flow) error { n++; return nil })
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "plan:")
	for _, l := range tr.Lines {
		fmt.Fprintln(e.stdout, "  "+l)
	}
	fmt.Fprintf(e.stdout, "matching flows: %d\n", n)
	return src.finish(nil)
}

// looksLikePath says whether a command-line word is meant as a file: it
// has a directory part or a capture file's extension.
func looksLikePath(w string) bool {
	if strings.ContainsRune(w, '/') {
		return true
	}
	for _, ext := range []string{".pcap", ".pcapng", ".cap", ".gz", ".zst", ".dmp", ".erf"} {
		if strings.HasSuffix(strings.ToLower(w), ext) {
			return true
		}
	}
	return false
}
