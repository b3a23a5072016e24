package pcapflow

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// CheckOutput refuses an output path that would destroy what the archive
// reads: the same file as one of its captures (hard and symbolic links
// included), or a place inside an index directory (one that holds
// pcapflow.lock). No option overrides it.
func (a *Archive) CheckOutput(path string) error {
	return checkOutput(path, a.inputs())
}

func checkOutput(path string, inputs []string) error {
	if path == "-" || path == "" {
		return nil
	}
	if st, err := os.Stat(path); err == nil {
		for _, in := range inputs {
			if ist, err := os.Stat(in); err == nil && !ist.IsDir() && os.SameFile(st, ist) {
				return fmt.Errorf("%s: %w: it is the capture %s", path, ErrOutputIsInput, in)
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
			return fmt.Errorf("%s: %w: it is inside the index %s", path, ErrOutputIsInput, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// CreateOutput writes a file for the archive's results: path is refused
// if CheckOutput refuses it; an existing file is kept unless force is set
// (ErrOutputExists). The file is written under a temporary name beside
// path and renamed into place when write succeeds, so a failed run leaves
// neither a truncated file nor the temporary one, and an existing file is
// untouched. A device or FIFO (/dev/null, a pipe a reader waits on) is
// written in place, as tcpdump -w does; renaming over it would replace
// the device. A symbolic link names the file to replace.
func (a *Archive) CreateOutput(path string, force bool, write func(io.Writer) (int64, error)) (int64, error) {
	return WriteFile(path, a.inputs(), force, write)
}

// WriteFile is CreateOutput for a program's own inputs: path is refused
// if it is one of inputs or inside an index.
func WriteFile(path string, inputs []string, force bool, write func(io.Writer) (int64, error)) (int64, error) {
	if err := checkOutput(path, inputs); err != nil {
		return 0, err
	}
	var perm os.FileMode = 0o644
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm() // a replaced file keeps its permissions
		switch {
		case fi.IsDir():
			return 0, fmt.Errorf("%s: is a directory", path)
		case !fi.Mode().IsRegular():
			return writeInPlace(path, write)
		case !force:
			return 0, fmt.Errorf("%s: %w", path, ErrOutputExists)
		}
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
	} else {
		perm = newFilePerm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		// Name the output, not the temporary file it is written under.
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = &os.PathError{Op: "create", Path: path, Err: pe.Err}
		}
		return 0, err
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file private (0600); the output is an
	// ordinary file, readable as any file the user creates.
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return 0, err
	}
	n, err := writeAndClose(tmp, write)
	if err != nil {
		return n, err
	}
	return n, os.Rename(tmp.Name(), path)
}

func writeInPlace(path string, write func(io.Writer) (int64, error)) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	return writeAndClose(f, write)
}
