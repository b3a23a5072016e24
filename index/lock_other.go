//go:build !unix

package index

import "os"

// lockFile is a no-op where flock is not available; concurrent index
// writers and readers must then be kept apart by the user.
func lockFile(f *os.File, exclusive bool) error { return nil }
