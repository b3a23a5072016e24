package flow

import (
	"strings"
	"time"
)

// Flow is one direction of a conversation with its counters. It is what
// `flows` prints and what an index stores per flow.
type Flow struct {
	// The fields a packet updates come first, in the first two cache
	// lines, so that accounting a packet touches as few lines as possible;
	// the rest is ordered so that no padding is left between fields.
	Key      Key
	conn     int32 // index of the connection in the table
	TCPFlags uint8 // OR of the flags of every segment
	// ended mirrors the connection's "FIN or RST seen", and steady says
	// that plain ACK/data segments of this direction cannot change the
	// connection's Zeek state or history: both spare the per-packet visit
	// to the connection record (a cache miss with a million flows).
	ended, steady bool
	Packets       uint64 // frames
	Bytes         uint64 // sum of original (wire) lengths
	PayloadBytes  uint64 // TCP/UDP payload per the IP length
	First, Last   int64  // ns since the epoch
	seq           seqTrack
	lastCap       int32 // the capture of the latest packet

	// Zeek-style connection state and history (TCP), shared by both
	// directions of a connection; History uses Zeek's letters with the
	// originator in upper case.
	State State

	// For a flow carried in a tunnel: the ID of the outer flow that
	// carried its first packet, and how deep it is nested (1 for a flow
	// inside one tunnel). The tunnel's type and ID are in the Key.
	Depth uint8

	HasSrcMAC, HasDstMAC bool

	active int64 // the table's clock at the latest packet

	ID   uint64 // 1, 2, 3... in order of first packet, across captures
	Peer uint64 // ID of the reverse flow of the same connection, 0 if none
	// Capture is the index of the capture of the flow's first packet,
	// among the captures of an archive (in the order they were read);
	// the flow's packets may continue into later captures.
	Capture int

	Outer uint64 // see Depth

	// TCP sequence accounting (see seqTrack): bytes never seen, bytes
	// seen again, and retransmitted bytes that came with new bytes.
	MissingBytes uint64
	RetransBytes uint64
	OverlapBytes uint64

	SrcMAC, DstMAC [6]byte // first seen
	History        History // see State
}

// CommunityID is the Community ID (v1, seed 0) of the flow's connection.
// It is computed on each call (a SHA-1 of the key).
func (f *Flow) CommunityID() string { return CommunityID(&f.Key, 0) }

// State is Zeek's conn_state of a TCP connection; 0 is none.
type State uint8

// States in Zeek's order of documentation.
const (
	StateNone State = iota
	StateS0
	StateS1
	StateSF
	StateREJ
	StateS2
	StateS3
	StateRSTO
	StateRSTR
	StateRSTOS0
	StateRSTRH
	StateSH
	StateSHR
	StateOTH
	numStates
)

var stateNames = [...]string{"", "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"}

func (s State) String() string {
	if s >= numStates {
		return "OTH"
	}
	return stateNames[s]
}

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool { return s < numStates }

// History is a Zeek connection history string of at most 23 letters,
// stored without a pointer so that flow tables are not scanned by the
// garbage collector.
type History struct {
	b [23]byte
	n uint8
}

// MakeHistory returns the history for s (cut to 23 letters).
func MakeHistory(s string) History {
	var h History
	h.n = uint8(copy(h.b[:], s))
	return h
}

func (h History) String() string { return string(h.b[:h.n]) }

// Append appends the letters to b.
func (h *History) Append(b []byte) []byte { return append(b, h.b[:h.n]...) }

// Len is the number of letters.
func (h History) Len() int { return int(h.n) }

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
