package flow

import (
	"strings"
	"time"
)

// Flow is one direction of a conversation with its counters. It is what
// `flows` prints and what an index stores per flow.
type Flow struct {
	ID   uint64 // 1, 2, 3... in order of first packet, across captures
	Peer uint64 // ID of the reverse flow of the same connection, 0 if none
	Key  Key
	// Capture is the index of the capture the flow was seen in, among the
	// captures of one run or index.
	Capture int

	SrcMAC, DstMAC       [6]byte // first seen
	HasSrcMAC, HasDstMAC bool

	Packets      uint64 // frames
	Bytes        uint64 // sum of original (wire) lengths
	PayloadBytes uint64 // TCP/UDP payload per the IP length
	First, Last  int64  // ns since the epoch

	TCPFlags uint8 // OR of the flags of every segment
	// Zeek-style connection state and history (TCP), shared by both
	// directions of a connection; History uses Zeek's letters with the
	// originator in upper case.
	State   string
	History string
	// Community ID (v1, seed 0) of the connection.
	CommunityID string

	// TCP sequence accounting: bytes never seen, bytes seen twice, and
	// bytes that overlapped earlier data with different content.
	MissingBytes uint64
	RetransBytes uint64
	OverlapBytes uint64
}

// Duration is Last - First.
func (f *Flow) Duration() time.Duration { return time.Duration(f.Last - f.First) }

// FlagLetters spells TCP flags as letters in bit order: F S R P A U E C
// (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
func FlagLetters(flags uint8) string {
	const letters = "FSRPAUEC"
	var b strings.Builder
	for i := 0; i < 8; i++ {
		if flags&(1<<i) != 0 {
			b.WriteByte(letters[i])
		}
	}
	return b.String()
}

// ParseFlagLetters is the inverse of FlagLetters.
func ParseFlagLetters(s string) (uint8, bool) {
	var f uint8
	for _, c := range strings.ToUpper(s) {
		i := strings.IndexRune("FSRPAUEC", c)
		if i < 0 {
			return 0, false
		}
		f |= 1 << i
	}
	return f, true
}
