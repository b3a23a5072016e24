//go:build unix

package reasm

import (
	"os"
	"syscall"
)

// Stream files are opened, written and renamed with plain system calls:
// os.File registers every file with the runtime poller and os.Rename
// stats the target first, which for tens of thousands of small files
// doubles the system calls.

// rawFile is an open stream file; its errors name the file, as os.File's
// do.
type rawFile struct {
	fd   int
	path string
}

func openFile(path string, truncate bool) (rawFile, error) {
	flag := syscall.O_WRONLY | syscall.O_CREAT | syscall.O_CLOEXEC
	if truncate {
		flag |= syscall.O_TRUNC
	} else {
		flag |= syscall.O_APPEND
	}
	for {
		fd, err := syscall.Open(path, flag, 0o644)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return rawFile{-1, path}, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return rawFile{fd, path}, nil
	}
}

func (f rawFile) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := syscall.Write(f.fd, b[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, &os.PathError{Op: "write", Path: f.path, Err: err}
		}
		n += m
	}
	return n, nil
}

// extendFile makes f size bytes long, the new bytes a hole, and moves
// its offset to the end (a file created with O_TRUNC does not append).
func extendFile(f rawFile, size int64) error {
	for {
		err := syscall.Ftruncate(f.fd, size)
		if err == syscall.EINTR {
			continue
		}
		if err == nil {
			_, err = syscall.Seek(f.fd, size, 0)
		}
		if err != nil {
			return &os.PathError{Op: "extend", Path: f.path, Err: err}
		}
		return nil
	}
}

func (f rawFile) Close() error {
	if err := syscall.Close(f.fd); err != nil {
		return &os.PathError{Op: "close", Path: f.path, Err: err}
	}
	return nil
}

func renameFile(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// fdLimit is the process's limit on open files (the soft limit, which the
// Go runtime raises to the hard limit at startup), or 0 if unknown.
func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}
