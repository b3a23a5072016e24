//go:build unix

package reasm

import (
	"os"
	"syscall"
)

// diskUsage is the space a file takes on disk.
func diskUsage(info os.FileInfo) (int64, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Blocks * 512, true
}
