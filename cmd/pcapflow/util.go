package main

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
)

func newBufWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 1<<20) }

// inputs are the files a command reads: its captures, and the index.
func (s *source) inputs() []string {
	var in []string
	for _, c := range s.r.Captures() {
		if c.Path != "" && c.Path != "-" {
			in = append(in, c.Path)
		}
	}
	return in
}

// refuseOutput refuses an output that would destroy what is being read:
// a path that is the same file as an input (links included), or one
// inside an index directory (a directory holding pcapflow.lock). It
// applies with or without --force: no flag makes overwriting the
// evidence a good idea.
func refuseOutput(path string, inputs []string) error {
	if path == "-" || path == "" {
		return nil
	}
	if st, err := os.Stat(path); err == nil {
		for _, in := range inputs {
			if ist, err := os.Stat(in); err == nil && os.SameFile(st, ist) {
				return usagef("refusing to write %s: it is the capture %s being read", path, in)
			}
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		if real, err := filepath.EvalSymlinks(d); err == nil {
			d = real
		}
		if _, err := os.Stat(filepath.Join(d, "pcapflow.lock")); err == nil {
			return usagef("refusing to write %s: it is inside the index %s", path, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}
