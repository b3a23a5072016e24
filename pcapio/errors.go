package pcapio

import (
	"errors"
	"fmt"
)

// Sentinel errors, wrapped by *Error. Test with errors.Is.
var (
	// ErrUnknownFormat means the input starts with no known magic number.
	ErrUnknownFormat = errors.New("not a pcap or pcapng capture (unknown magic number)")
	// ErrTruncated means the input ended inside a record or block. Every
	// record before it was read intact; callers usually report it as a
	// warning.
	ErrTruncated = errors.New("capture ends in the middle of a record")
	// ErrRecordTooLarge means a record or block claims a length that no
	// real capture has (over MaxRecordLen) or that runs past the end of
	// the file.
	ErrRecordTooLarge = errors.New("record length is implausible")
	// ErrBadBlock means a pcapng block is malformed: too short, not a
	// multiple of 4, or its trailing length differs from its leading one.
	ErrBadBlock = errors.New("malformed pcapng block")
	// ErrUnsupportedVersion means a pcapng section has a major version
	// other than 1.
	ErrUnsupportedVersion = errors.New("unsupported pcapng version")
	// ErrNoInterface means a pcapng packet block names an interface that
	// no interface description block defined.
	ErrNoInterface = errors.New("packet refers to an undefined interface")
)

// MaxRecordLen bounds the captured length of one record and the size of
// one pcapng block. Real link layers stay far below it; a larger value is
// corruption, and refusing it keeps a bad length from allocating gigabytes.
const MaxRecordLen = 256 << 20

// Error describes a problem at a byte offset of a named capture.
type Error struct {
	File   string // capture name as given by the caller ("-" for stdin)
	Offset int64  // byte offset in the (decompressed) capture
	Err    error  // one of the sentinel errors above, possibly wrapped
	Detail string // extra context, such as the offending value
}

func (e *Error) Error() string {
	name := e.File
	if name == "" {
		name = "capture"
	}
	if e.Detail != "" {
		return fmt.Sprintf("%s: offset %d: %v: %s", name, e.Offset, e.Err, e.Detail)
	}
	return fmt.Sprintf("%s: offset %d: %v", name, e.Offset, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsWarning reports whether err marks a capture that ended early but whose
// records up to that point are intact (a truncated last record).
func IsWarning(err error) bool { return errors.Is(err, ErrTruncated) }
