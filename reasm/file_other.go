//go:build !unix

package reasm

import "os"

type rawFile = *os.File

func openFile(path string, truncate bool) (rawFile, error) {
	flag := os.O_WRONLY | os.O_CREATE
	if truncate {
		flag |= os.O_TRUNC
	} else {
		flag |= os.O_APPEND
	}
	return os.OpenFile(path, flag, 0o644)
}

func renameFile(from, to string) error { return os.Rename(from, to) }

func fdLimit() int { return 0 }

// extendFile makes f size bytes long, the new bytes a hole where the file
// system has them, and moves its offset to the end.
func extendFile(f rawFile, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	_, err := f.Seek(size, 0)
	return err
}
