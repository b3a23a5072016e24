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
