package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/pcapflow/pcapflow"
)

const extractUsage = `usage: pcapflow extract [-i INDEX] [CAPTURE...] -w OUT [options] [FILTER...]

Write the packets of the flows that match FILTER to OUT, byte for byte as
they are in the capture, each once, in capture order (merged by timestamp
across captures). From an index only those packets are read. OUT is pcap,
or pcapng when a capture is pcapng or link types differ; -w - writes to
standard output.

options:
  -w OUT            output file ("-" for standard output)
  --format pcap|pcapng   force the output format
  --from T, --to T  keep only packets from T (inclusive) to T (exclusive),
                    as editcap -A/-B: the filter picks flows, the window
                    trims their packets. T is RFC 3339 (2024-05-01T10:00:00Z),
                    "2024-05-01 10:00:00" in --tz, or Unix seconds
  --force           overwrite OUT if it exists (never a capture being read)
  -i INDEX          answer from this index
`

// window reads --from and --to.
func window(from, to string, cf *commonFlags) (pcapflow.Window, error) {
	var w pcapflow.Window
	loc, err := cf.location()
	if err != nil {
		return w, err
	}
	if from != "" {
		if w.From, err = parseTime(from, loc); err != nil {
			return w, usagef("--from: %v", err)
		}
	}
	if to != "" {
		if w.To, err = parseTime(to, loc); err != nil {
			return w, usagef("--to: %v", err)
		}
	}
	if !w.From.IsZero() && !w.To.IsZero() && !w.From.Before(w.To) {
		return w, usagef("--from %s is not before --to %s", from, to)
	}
	return w, nil
}

// parseTime reads a time as people write one: RFC 3339, a date and time
// in loc, or Unix seconds with a fraction.
func parseTime(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	sec, frac, hasFrac := strings.Cut(s, ".")
	if n, err := strconv.ParseInt(sec, 10, 64); err == nil {
		ns := int64(0)
		if hasFrac {
			v, err := strconv.ParseUint(frac, 10, 64)
			if err != nil || len(frac) > 9 {
				return time.Time{}, fmt.Errorf("%q: not a time", s)
			}
			for i := len(frac); i < 9; i++ {
				v *= 10
			}
			ns = int64(v)
		}
		return time.Unix(n, ns).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q: not a time (want RFC 3339, \"2006-01-02 15:04:05\" or Unix seconds)", s)
}

func runExtract(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var out, format, from, to string
	var force bool
	fs := flag.NewFlagSet("extract", flag.ContinueOnError)
	fs.StringVar(&out, "w", "", "")
	fs.StringVar(&format, "format", "", "")
	fs.StringVar(&from, "from", "", "")
	fs.StringVar(&to, "to", "", "")
	fs.BoolVar(&force, "force", false, "")
	src, expr, err := prepare(ctx, e, fs, &cf, args, true)
	if err != nil {
		return err
	}
	if out == "" {
		return usagef("extract needs -w OUT")
	}
	opts := &pcapflow.ExtractOptions{}
	if opts.Window, err = window(from, to, &cf); err != nil {
		return err
	}
	if cf.remote != nil {
		if format != "" && format != "pcap" && format != "pcapng" {
			return usagef("--format %q: want pcap or pcapng", format)
		}
		return cf.remote.extract(ctx, e, out, format, force, opts.Window.From, opts.Window.To, exprString(expr))
	}
	defer src.Close()
	switch format {
	case "":
		opts.Format = src.OutputFormat()
	case "pcap":
		opts.Format = pcapflow.FormatPcap
	case "pcapng":
		opts.Format = pcapflow.FormatPcapNG
	default:
		return usagef("--format %q: want pcap or pcapng", format)
	}
	if err := checkOutput(src, out); err != nil {
		return err
	}
	ids, err := selectIDs(ctx, e, src, expr)
	if err != nil {
		return err
	}
	n, err := writeOutput(src, out, force, e.stdout, func(w io.Writer) (int64, error) {
		return src.Extract(ctx, w, ids, opts)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "extracted %d %s of %d %s to %s (%s)\n", n, plural(uint64(n), "packet", "packets"),
		len(ids), pluralInt(len(ids), "flow", "flows"), out, opts.Format)
	return finish(src, nil)
}

// checkOutput refuses, before any work, an output that is an input.
func checkOutput(src *pcapflow.Archive, path string) error {
	if err := src.CheckOutput(path); err != nil {
		return usagef("refusing to write %v", err)
	}
	return nil
}

// writeOutput writes standard output ("-") or a file through the
// archive's CreateOutput (a temporary name renamed into place; an
// existing file kept unless force).
func writeOutput(src *pcapflow.Archive, path string, force bool, stdout io.Writer, write func(io.Writer) (int64, error)) (int64, error) {
	if path == "-" {
		bw := newBufWriter(stdout)
		n, err := write(bw)
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
		return n, err
	}
	n, err := src.CreateOutput(path, force, write)
	return n, outputError(path, err)
}

// outputError says what to do about an output refused.
func outputError(path string, err error) error {
	switch {
	case errors.Is(err, pcapflow.ErrOutputIsInput):
		return usagef("refusing to write %v", err)
	case errors.Is(err, pcapflow.ErrOutputExists):
		return usagef("%s exists; use --force to overwrite it", path)
	}
	return err
}

// selectIDs returns the IDs of the flows that match expr, warning when
// there are none: the output is still written (an empty capture, as
// tcpdump writes), but a mistyped flow ID or address should not pass
// unnoticed.
func selectIDs(ctx context.Context, e *env, src *pcapflow.Archive, expr pcapflow.Expr) ([]uint64, error) {
	ids, err := src.IDs(ctx, pcapflow.Query{Expr: expr})
	if err == nil && len(ids) == 0 {
		e.warn(noMatch(expr))
	}
	return ids, err
}

// noMatch is the warning for a selection of no flows.
func noMatch(expr pcapflow.Expr) error {
	if expr == nil {
		return errors.New("the capture has no flows")
	}
	return fmt.Errorf("no flow matches %q", expr.String())
}
