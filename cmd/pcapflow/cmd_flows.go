package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/pcapflow/pcapflow"
)

const flowsUsage = `usage: pcapflow flows [-i INDEX] [CAPTURE...] [options] [FILTER...]

List the flows (one row per direction) that match FILTER, from the index
beside the capture (CAPTURE.pfidx) or -i INDEX when there is one, else by
scanning the captures. Several captures form one archive.

options:
  -F text|seed|json|csv|zeek   output format: a table (default), pcap_flow's
                     line, JSON lines, CSV, or Zeek conn.log JSON lines (one
                     per conversation, as export writes them)
  --sort id|first|last|packets|bytes|duration   order (default id)
  --reverse          reverse the order
  --limit N          print at most N rows
  --offset N         skip the first N rows of the order
  --min-packets N    only flows (conversations) with at least N packets
  --bidir            one row per conversation (both directions)
  --tz ZONE          time zone of the table's dates (default $TZ, else UTC)
  -i INDEX           answer from this index
  --idle-timeout D   a connection silent for D ends (default 10m; 0 never)
  --close-timeout D  a closed TCP connection (RST, or FIN each way) silent
                     for D ends (default 5s, Zeek's tcp_close_delay)
  --progress         show progress on stderr even when it is not a terminal
  --scan             read the captures even when an index is beside them

FILTER is the filter language of docs/query.md, e.g. 'tcp port 80 and not host 10.0.0.1'.
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
	offset     int
	minPackets uint64
	bidir      bool
}

// parseFilter parses a filter; a syntax error is a usage error that
// shows the caret.
func parseFilter(s string) (pcapflow.Expr, error) {
	e, err := pcapflow.Parse(s)
	var se *pcapflow.SyntaxError
	if errors.As(err, &se) {
		return nil, usagef("%s\n%s", se.Msg, se.Caret())
	}
	return e, err
}

// prepare parses the command line of a query command and opens the
// source: the shared first half of flows, count, explain, extract,
// streams and follow.
func prepare(ctx context.Context, e *env, fs *flag.FlagSet, cf *commonFlags, args []string, needPackets bool) (*pcapflow.Archive, pcapflow.Expr, error) {
	cf.register(fs)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}
	cf.noteSet(fs)
	captures, filter := splitCaptures(rest)
	r, rerr := remoteOf(cf)
	if r == nil && rerr == nil && cf.indexDir != "" {
		// The index opens while the filter parses: on two cores a
		// one-flow extract then pays for the larger of the two, not
		// their sum (the first parse builds participle's parser from the
		// grammar's tags, about 1 ms; Pebble's open is about as long).
		cf.opening = startOpen(cf.indexDir)
	}
	expr, err := parseFilter(filter)
	if err != nil {
		cf.opening.discard()
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
	if rerr != nil || r != nil {
		if rerr == nil && len(captures) > 0 {
			rerr = usagef("-i %s answers for the sensor's archive: give no captures", cf.indexDir)
		}
		cf.remote = r
		return nil, expr, rerr
	}
	src, err := openSource(ctx, e, cf, captures, needPackets)
	cf.opening.discard() // when openSource stopped before it took the index
	if err != nil {
		return nil, nil, err
	}
	return src, expr, nil
}

// exprString is a filter as the server parses it ("" for none).
func exprString(e pcapflow.Expr) string {
	if e == nil {
		return ""
	}
	return e.String()
}

func runFlows(ctx context.Context, e *env, args []string) error {
	var ff flowsFlags
	fs := flag.NewFlagSet("flows", flag.ContinueOnError)
	fs.StringVar(&ff.format, "F", "text", "")
	fs.StringVar(&ff.sortBy, "sort", "id", "")
	fs.BoolVar(&ff.reverse, "reverse", false, "")
	fs.IntVar(&ff.limit, "limit", 0, "")
	fs.IntVar(&ff.offset, "offset", 0, "")
	fs.Uint64Var(&ff.minPackets, "min-packets", 0, "")
	fs.BoolVar(&ff.bidir, "bidir", false, "")
	src, expr, err := prepare(ctx, e, fs, &ff.commonFlags, args, false)
	if err != nil {
		return err
	}
	if r := ff.remote; r != nil {
		return r.flows(ctx, e, &ff, exprString(expr))
	}
	defer src.Close()
	q := pcapflow.Query{Expr: expr, Sort: pcapflow.SortKey(ff.sortBy), Reverse: ff.reverse, Limit: ff.limit, Offset: ff.offset, MinPackets: ff.minPackets}
	if !validSort(q.Sort) {
		return usagef("--sort %q: want id, first, last, packets, bytes or duration", ff.sortBy)
	}
	if ff.limit < 0 || ff.offset < 0 {
		return usagef("--limit and --offset take a count of rows, not %d", min(ff.limit, ff.offset))
	}
	loc, err := ff.location()
	if err != nil {
		return err
	}
	lo := src.ListOptions()
	lo.Location = loc
	format := pcapflow.ListFormat(ff.format)
	if ff.format == "zeek" {
		// conn.log's records are conversations: -F zeek implies --bidir.
		return finish(src, writeZeek(ctx, e, src, q))
	}
	err = src.List(ctx, e.stdout, q, ff.bidir, format, lo)
	if errors.Is(err, pcapflow.ErrFormat) {
		return usagef("-F: %v", err)
	}
	return finish(src, err)
}

func validSort(k pcapflow.SortKey) bool {
	for _, s := range pcapflow.SortKeys {
		if k == s {
			return true
		}
	}
	return false
}

// finish reports a scan that ended early or left captures out: its
// results stand, but the run fails.
func finish(src *pcapflow.Archive, err error) error {
	if err == nil {
		return src.Err()
	}
	return err
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
	if cf.remote != nil {
		return cf.remote.count(ctx, e, format, exprString(expr))
	}
	defer src.Close()
	c, err := src.Count(ctx, pcapflow.Query{Expr: expr})
	if err != nil {
		return err
	}
	switch format {
	case "json":
		b, _ := json.Marshal(c)
		fmt.Fprintf(e.stdout, "%s\n", b)
	case "text":
		fmt.Fprintf(e.stdout, "flows %d packets %d bytes %d\n", c.Flows, c.Packets, c.Bytes)
	default:
		return usagef("-F %q: want text or json", format)
	}
	return finish(src, nil)
}

func runExplain(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	src, expr, err := prepare(ctx, e, fs, &cf, args, false)
	if err != nil {
		return err
	}
	if cf.remote != nil {
		return cf.remote.explain(ctx, e, exprString(expr))
	}
	defer src.Close()
	p, err := src.Explain(ctx, pcapflow.Query{Expr: expr})
	if err != nil {
		return err
	}
	if p.Filter == "" {
		fmt.Fprintln(e.stdout, "filter: (none: every flow)")
	} else {
		fmt.Fprintf(e.stdout, "filter: %s\n", p.Filter)
	}
	fmt.Fprintf(e.stdout, "source: %s\n", p.Source)
	fmt.Fprintln(e.stdout, "plan:")
	for _, l := range p.Steps {
		fmt.Fprintln(e.stdout, "  "+l)
	}
	fmt.Fprintf(e.stdout, "matching flows: %d\n", p.Matching)
	return finish(src, nil)
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
