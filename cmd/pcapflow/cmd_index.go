package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pcapflow/pcapflow"
)

const indexUsage = `usage: pcapflow index [-i INDEX] CAPTURE...

Read each capture once and write its flows, per-flow packet offsets and
lookup keys into a Pebble index. Without -i, a single capture gets
CAPTURE.pfidx beside it. Several captures (or directories, whose
captures are found by content) go into one index as one archive: taken
in time order, connections continuing from one file into the next.
Running index again adds only captures the index does not hold, and
the connections still open at the archive's end continue into them.

options:
  -i INDEX          index directory (required for several captures)
  --memory-limit SIZE   a soft limit on the heap (default 260M; 0 none; GOMEMLIMIT
                    overrides): the garbage collector works harder near it
                    instead of letting the heap grow to twice what is live;
                    it rises to a tenth above what is live when that is more.
                    A 2 GB capture's run peaks under 300 MB; 320M is about
                    10% faster in 360 MB
  --idle-timeout D  a connection silent for D ends (default 10m; 0 never);
                    an index keeps the settings it was made with: without
                    these two options it goes on with them, with them they
                    must be its own
  --close-timeout D a closed TCP connection (RST, or FIN each way) silent
                    for D ends (default 5s, Zeek's tcp_close_delay)
  --settle D        leave for a later run the captures modified less than D
                    ago (and those after them in time order): a sensor's
                    newest file, still being written, waits until it is
                    complete. For a cron line: index --settle 2m DIR
  --progress        show progress on stderr even when it is not a terminal
`

func runIndex(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var memLimit string
	fs := flag.NewFlagSet("index", flag.ContinueOnError)
	cf.register(fs)
	fs.StringVar(&memLimit, "memory-limit", "260M", "")
	settle := fs.Duration("settle", 0, "")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	cf.noteSet(fs)
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return usagef("no capture given")
	}
	limit, ok := parseSize(memLimit)
	if !ok {
		return usagef("--memory-limit %q: want a size such as 256M", memLimit)
	}
	// The ingest's heap is mostly the live flows and what waits to be
	// written; left alone, Go lets it grow to twice that before it
	// collects (530 MB for 210 MB live on the 2 GB benchmark capture).
	// A soft limit keeps it near what is live for a few percent of time,
	// from the first collection on: no start-up hold (gc.go).
	e.gc.release()
	if limit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(int64(limit)))
		defer floatLimit(int64(limit))()
	}
	for _, c := range rest {
		if c == "-" {
			return usagef("standard input cannot be indexed: it cannot be read again to extract packets; save it to a file first (or scan it: pcapflow flows -)")
		}
	}
	dir := cf.indexDir
	if dir == "" {
		if len(rest) != 1 {
			return usagef("several captures go into one index: give it with -i DIR")
		}
		if st, err := os.Stat(rest[0]); err == nil && st.IsDir() {
			return usagef("a directory of captures goes into an index you name: pcapflow index -i DIR.pfidx %s", rest[0])
		}
		dir = pcapflow.DefaultIndex(rest[0])
	}
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return usagef("-i %s: that is a file; an index is a directory", dir)
	}
	for _, c := range rest {
		if _, err := os.Stat(c); err != nil {
			return fmt.Errorf("capture %s: %w", c, err)
		}
	}
	// Without flow options, an index that exists goes on with its own
	// (a sensor's cron line need not repeat them); given ones must match.
	var grown atomic.Int32
	warn := func(err error) {
		var ge *pcapflow.GrownError
		if errors.As(err, &ge) {
			grown.Add(1)
		}
		e.warn(err)
	}
	if *settle < 0 {
		return usagef("--settle %v: want a duration of 0 or more, such as 2m", *settle)
	}
	opts := &pcapflow.IndexOptions{Warn: warn, Settings: cf.settings(), KeepSettings: !cf.timeoutSet, Settle: *settle}
	stop := e.startProgress(&cf, &opts.Progress)
	start := time.Now()
	res, err := pcapflow.Index(ctx, dir, rest, opts)
	stop()
	if grown.Load() > 0 {
		e.warn(errors.New("an index cannot add to a capture it holds: index captures once they are complete (index --settle D, or serve --watch: docs/reliability.md)"))
	}

	// The summary tells what went in: nothing did when the run failed.
	if res != nil && err == nil && len(res.Added) > 0 {
		var flows, packets, nonIP uint64
		var bytes int64
		for _, c := range res.Added {
			flows += c.Flows
			packets += c.Packets
			nonIP += c.NonIP
			if c.Size > 0 {
				bytes += c.Size
			}
		}
		el := time.Since(start)
		fmt.Fprintf(e.stderr, "indexed %d %s into %s: %d %s, %d %s, %.1f MB in %.2fs (%.0f MB/s)",
			len(res.Added), pluralInt(len(res.Added), "capture", "captures"), dir, flows, plural(flows, "flow", "flows"),
			packets, plural(packets, "packet", "packets"), float64(bytes)/1e6, el.Seconds(), float64(bytes)/1e6/el.Seconds())
		if nonIP > 0 {
			// Counted, never silently dropped: ARP, LLDP, undecodable frames.
			fmt.Fprintf(e.stderr, "; %d %s in no flow (not IP)", nonIP, plural(nonIP, "packet", "packets"))
		}
		if len(res.Skipped) > 0 {
			fmt.Fprintf(e.stderr, "; %d already indexed", len(res.Skipped))
		}
		fmt.Fprintln(e.stderr)
	}
	if res != nil && err == nil && len(res.Settling) > 0 {
		// Said on every run, so that a cron line's log shows what waits.
		fmt.Fprintf(e.stderr, "left %d %s for a later run, modified less than %v ago or after one that was (such as %s)\n",
			len(res.Settling), pluralInt(len(res.Settling), "capture", "captures"), *settle, res.Settling[0])
	}
	if res != nil && err == nil {
		e.warnSkipped(res.NotCaptures)
		if len(res.Added) == 0 && len(res.Errors) == 0 {
			// Said, not silent: a cron line over a directory that holds
			// nothing new, or nothing at all (a sensor that stopped
			// writing, a mistyped path) is told which.
			if n := len(res.Skipped); n > 0 {
				fmt.Fprintf(e.stderr, "nothing new for %s: %d %s already indexed\n", dir, n, pluralInt(n, "capture", "captures"))
				return nil
			}
			if len(res.Settling) > 0 {
				return nil // all of them wait, as said
			}
			return fmt.Errorf("no captures in %s: nothing to index", strings.Join(rest, " "))
		}
	}
	if res != nil {
		if err == nil && len(res.Errors) > 0 {
			for _, xe := range res.Errors[:len(res.Errors)-1] {
				fmt.Fprintf(e.stderr, "pcapflow index: %v\n", xe)
			}
			err = res.Errors[len(res.Errors)-1]
		}
	}
	if errors.Is(err, pcapflow.ErrInUse) {
		return fmt.Errorf("%w; wait for it to finish", err)
	}
	if errors.Is(err, os.ErrPermission) && cf.indexDir == "" {
		// A capture on a read-only share: its default index place is not
		// writable, another one is.
		return fmt.Errorf("%w; the index goes beside the capture unless -i DIR says where (then query with -i DIR too)", err)
	}
	return err
}

func plural(n uint64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
