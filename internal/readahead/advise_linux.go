package readahead

import (
	"os"

	"golang.org/x/sys/unix"
)

// sequential doubles the kernel's own read-ahead window for f.
func sequential(f *os.File) {
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
}

// willNeed starts reading n bytes of f from off into the page cache,
// without waiting for them.
func willNeed(f *os.File, off, n int64) {
	unix.Fadvise(int(f.Fd()), off, n, unix.FADV_WILLNEED)
}
