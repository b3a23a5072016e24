package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/pcapflow/pcapflow"
	"github.com/pcapflow/pcapflow/export"
)

const exportUsage = `usage: pcapflow export [-i INDEX] [CAPTURE...] -o DIR [--sensor NAME] [FILTER...]

Write the archive's conversations as Parquet, one row per conversation,
hive-partitioned by day (DIR/date=YYYY-MM-DD/part-RUN-ID.parquet), with
Zeek conn.log's columns plus sensor, orig_flow, resp_flow, capture and
vlan: DuckDB, Trino, Spark and ClickHouse read them (docs/fleet.md).
Running it again after captures were added writes only the new
conversations, in new files; conversations still open at the archive's
end wait for a later run.

options:
  -o DIR            the export directory
  --sensor NAME     the sensor column (default: this host's name)
  --final           export the conversations still open too: the archive
                    will not grow (a one-off capture); otherwise they wait
                    for the next export, since new captures may continue them
  -i INDEX          export from this index
`

func runExport(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var out, sensor string
	var final bool
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.BoolVar(&final, "final", false, "")
	fs.StringVar(&out, "o", "", "")
	fs.StringVar(&sensor, "sensor", "", "")
	src, expr, err := prepare(ctx, e, fs, &cf, args, false)
	if err != nil {
		return err
	}
	if cf.remote != nil {
		return usagef("export runs on the sensor, beside its index (docs/fleet.md)")
	}
	defer src.Close()
	if out == "" {
		return usagef("export needs -o DIR")
	}
	filter := ""
	if expr != nil {
		filter = expr.String()
	}
	start := time.Now()
	res, err := export.Parquet(ctx, src, out, &export.Options{Sensor: sensor, Filter: filter, Final: final})
	if errors.Is(err, pcapflow.ErrOutputIsInput) {
		return usagef("refusing to write %v", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "exported %d %s to %s in %d %s (%.1f MB, %.1f bytes a conversation) in %.2fs",
		res.Rows, pluralInt(res.Rows, "conversation", "conversations"), out, len(res.Files), pluralInt(len(res.Files), "file", "files"),
		float64(res.Bytes)/1e6, float64(res.Bytes)/float64(max(res.Rows, 1)), time.Since(start).Seconds())
	if res.Skipped > 0 {
		fmt.Fprintf(e.stderr, "; %d exported before", res.Skipped)
	}
	if res.Live > 0 {
		fmt.Fprintf(e.stderr, "; %d still open, left for a later export (--final: the archive will not grow)", res.Live)
	}
	fmt.Fprintln(e.stderr)
	return finish(src, nil)
}

// writeZeek prints conversations as conn.log JSON lines (flows -F zeek).
func writeZeek(ctx context.Context, e *env, src *pcapflow.Archive, q pcapflow.Query) error {
	w := newBufWriter(e.stdout)
	if err := export.WriteConnJSON(ctx, w, src, q, hostname()); err != nil {
		return err
	}
	return w.Flush()
}
