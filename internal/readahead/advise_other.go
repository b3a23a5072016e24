//go:build !linux

package readahead

import "os"

func sequential(*os.File)             {}
func willNeed(*os.File, int64, int64) {}
