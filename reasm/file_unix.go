//go:build unix

package reasm

import "syscall"

// Stream files are opened, written and renamed with plain system calls:
// os.File registers every file with the runtime poller and os.Rename
// stats the target first, which for tens of thousands of small files
// doubles the system calls.

type rawFile int

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
		return rawFile(fd), err
	}
}

func (f rawFile) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := syscall.Write(int(f), b[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// extendFile makes f size bytes long, the new bytes a hole, and moves
// its offset to the end (a file created with O_TRUNC does not append).
func extendFile(f rawFile, size int64) error {
	for {
		err := syscall.Ftruncate(int(f), size)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		_, err = syscall.Seek(int(f), size, 0)
		return err
	}
}

func (f rawFile) Close() error { return syscall.Close(int(f)) }

func renameFile(from, to string) error { return syscall.Rename(from, to) }

// fdLimit is the process's limit on open files (the soft limit, which the
// Go runtime raises to the hard limit at startup), or 0 if unknown.
func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}
