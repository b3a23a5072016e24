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

func (f rawFile) Close() error { return syscall.Close(int(f)) }

func renameFile(from, to string) error { return syscall.Rename(from, to) }
