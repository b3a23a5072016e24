package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/pcapflow/pcapflow"
)

// Options configure Parquet.
type Options struct {
	// Sensor names the machine in every row (default: the host name).
	Sensor string
	// Filter selects conversations of which a direction matches ("":
	// all).
	Filter string
	// RowGroup is the rows of a row group (0: 1,000,000, about 30 MB of
	// Parquet: what DuckDB, Trino and Spark read well in parallel).
	RowGroup int64
	// Final exports the conversations still open at the archive's end
	// too, for an archive that will not grow (a one-off capture, the
	// last export of a sensor). Without it they wait for a later export,
	// since captures added later may continue them.
	Final bool
}

// Result says what an export wrote.
type Result struct {
	Rows    int      // conversations written
	Live    int      // conversations left for a later export: still open
	Skipped int      // conversations exported before
	Files   []string // the files written, relative to the directory
	Bytes   int64
}

// stateFile remembers, in the export directory, what was exported from
// which archive, so that running the export again after captures were
// added writes only the new conversations, in new files.
const stateFile = "_pcapflow_export.json"

type exportState struct {
	Version string `json:"version"`
	Archive string `json:"archive"` // the uid seed: which archive this is
	Sensor  string `json:"sensor"`
	// Next is the first conversation ID not looked at yet; Pending are
	// conversations below it that were still open then.
	Next    uint64   `json:"next"`
	Pending []uint64 `json:"pending"`
	Runs    int      `json:"runs"`
}

// Parquet writes the archive's conversations to dir as Parquet files,
// hive-partitioned by the day of their first packet (dir/date=YYYY-MM-DD/
// part-RUN-N.parquet), zstd-compressed, one row per conversation
// (Conn's columns). Conversations still open at the end of the archive
// (they may continue into captures added later) are left for the next
// export, which writes new files and never rewrites old ones. Files are
// written under temporary names and renamed at the end: after a failure
// nothing partial is left and the state is unchanged.
func Parquet(ctx context.Context, a *pcapflow.Archive, dir string, o *Options) (*Result, error) {
	if o == nil {
		o = &Options{}
	}
	sensor := o.Sensor
	if sensor == "" {
		sensor, _ = os.Hostname()
	}
	rowGroup := o.RowGroup
	if rowGroup <= 0 {
		rowGroup = 1_000_000
	}
	if err := a.CheckOutput(filepath.Join(dir, stateFile)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conv := NewConverter(a, sensor)
	seed := fmt.Sprintf("%x", conv.seed[:8])
	st := exportState{Version: "pcapflow-export/1", Archive: seed, Sensor: sensor, Next: 1}
	if b, err := os.ReadFile(filepath.Join(dir, stateFile)); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
		}
		if st.Archive != seed || st.Sensor != sensor {
			return nil, fmt.Errorf("%s holds an export of another archive or sensor (%s, %s); export this one into its own directory", dir, st.Sensor, st.Archive)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	res := &Result{}
	run := st.Runs + 1
	pending := map[uint64]bool{}
	for _, id := range st.Pending {
		pending[id] = true
	}
	var nextPending []uint64
	// One writer a day, open while rows come (in conversation order,
	// which is time order, so a day's rows come together); rows go out in
	// batches, so memory does not grow with the archive.
	type dayFile struct {
		tmp   *os.File
		final string
		w     *parquet.GenericWriter[Conn]
		batch []Conn
	}
	days := map[string]*dayFile{}
	var files []*dayFile
	cleanup := func() {
		for _, f := range files {
			f.tmp.Close()
			os.Remove(f.tmp.Name())
		}
	}
	flush := func(f *dayFile) error {
		if _, err := f.w.Write(f.batch); err != nil {
			return fmt.Errorf("%s: %w", f.tmp.Name(), err)
		}
		res.Rows += len(f.batch)
		f.batch = f.batch[:0]
		return nil
	}
	name := fmt.Sprintf("part-%04d-%s.parquet", run, seed)
	for c, err := range a.Conversations(ctx, pcapflow.Query{Filter: o.Filter}) {
		if err != nil {
			cleanup()
			return nil, err
		}
		if c.ID < st.Next && !pending[c.ID] {
			res.Skipped++
			continue
		}
		if !o.Final && (a.Live(c.A.ID) || c.B != nil && a.Live(c.B.ID)) {
			res.Live++
			nextPending = append(nextPending, c.ID)
			continue
		}
		r := conv.Conn(ctx, c)
		day := r.TS.Format("2006-01-02")
		f := days[day]
		if f == nil {
			pdir := filepath.Join(dir, "date="+day)
			if err := os.MkdirAll(pdir, 0o755); err != nil {
				cleanup()
				return nil, err
			}
			tmp, err := os.CreateTemp(pdir, "."+name+".tmp*")
			if err != nil {
				cleanup()
				return nil, err
			}
			f = &dayFile{tmp: tmp, final: filepath.Join(pdir, name)}
			f.w = parquet.NewGenericWriter[Conn](tmp, parquet.Compression(&zstd.Codec{Level: zstd.SpeedDefault}),
				parquet.MaxRowsPerRowGroup(rowGroup), parquet.CreatedBy("pcapflow", "1", ""))
			days[day] = f
			files = append(files, f)
		}
		f.batch = append(f.batch, r)
		if len(f.batch) == 4096 {
			if err := flush(f); err != nil {
				cleanup()
				return nil, err
			}
		}
	}
	for _, f := range files {
		err := flush(f)
		if err == nil {
			err = f.w.Close()
		}
		if err == nil {
			err = f.tmp.Sync()
		}
		if cerr := f.tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("%s: %w", f.tmp.Name(), err)
		}
	}
	// The new state is written in full before anything is published, so
	// that a full disk cannot leave files the state does not know of
	// (a later run would export their rows again).
	slices.Sort(nextPending)
	st.Next, st.Pending, st.Runs = a.NumFlows()+1, nextPending, run
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := filepath.Join(dir, "."+stateFile+".tmp")
	if err := writeSynced(tmp, append(b, '\n')); err != nil {
		os.Remove(tmp)
		cleanup()
		return nil, fmt.Errorf("%s: %w", tmp, err)
	}
	// Publish: the files, then the state that says they are there. A
	// failure takes back what this run published.
	var published []string
	unpublish := func() {
		for _, p := range published {
			os.Remove(p)
		}
		os.Remove(tmp)
		cleanup()
	}
	for _, f := range files {
		if err := os.Rename(f.tmp.Name(), f.final); err != nil {
			unpublish()
			return nil, err
		}
		published = append(published, f.final)
		if st, err := os.Stat(f.final); err == nil {
			res.Bytes += st.Size()
		}
		rel, _ := filepath.Rel(dir, f.final)
		res.Files = append(res.Files, rel)
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateFile)); err != nil {
		unpublish()
		return nil, err
	}
	return res, nil
}

// writeSynced writes b to a new file at path and syncs it.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
