package index

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// Key layout of the Pebble store. Every key starts with a one-byte tag;
// integers are big-endian so that byte order is numeric order. Each kind
// of key is one type below with its encoding, its decoding and a printer
// (String); nothing else in the package slices keys.
//
//	M <name>                                  metadata (metaKey)
//	K <capture u32>                           a capture's record (captureKey)
//	C <capture u32> <chunk u32>               offsets of every CheckpointEvery-th record (checkpointKey)
//	F <first ID u64>                          flow records of IDs first.. first+flowBlock-1 (blockKey)
//	Q <first ID u64>                          those flows' posting tails (blockKey)
//	G, R <first ID u64>                       provisional F and Q: the block still has live flows
//	L <span u64> <gen u32> <n u32>            records and tails of flows of IDs span.. span+lateSpan-1
//	                                          that outlived their blocks and ended in run gen (lateGroupKey)
//	N <span u64> <gen u32> <n u32>            the same for flows live at the commit of run gen
//	P <ID u64> <chunk u32>                    a full posting chunk of one flow (chunkKey)
//	A <field u8> <value> <first ID u64>       IDs of flows whose field has the value (listKey);
//	                                          for values fixed when a flow starts
//	B <field u8> <value> <gen u32> <first>    the same for values final when a flow ends (listKey
//	                                          with a generation: the index run that wrote it)
//	H <field u8> <ver u8> <seg u64> <address> <ID u64>   sorted (address, ID) pairs (addrKey)
//	D <capture u32> <first ID u64>            IDs of flows with packets in the capture (inCaptureKey)
//	S <chunk u32>                             the live flows' state, for the next run (stateKey)
//	Z <capture u32> <offset u64>              where a gzip capture's decompression can resume (resumeKey)
//
// Provisional keys (G, R, N, S and the metadata) are written only in the
// batch that commits an index run, atomically; every other key is new
// when it is written. A reader takes the provisional key where there is
// one and the final one otherwise, and ignores what lies past the
// committed flow IDs, captures and generation: so an index run that dies
// leaves the index answering exactly what it answered before.
const (
	tagMeta       = 'M'
	tagCapture    = 'K'
	tagCheckpoint = 'C'
	tagFlows      = 'F'
	tagTails      = 'Q'
	tagFlowsProv  = 'G'
	tagTailsProv  = 'R'
	tagLate       = 'L'
	tagLateProv   = 'N'
	tagChunk      = 'P'
	tagList       = 'A'
	tagFinalList  = 'B'
	tagAddr       = 'H'
	tagInCapture  = 'D'
	tagState      = 'S'
	tagResume     = 'Z'
)

// Numbers in keys are big-endian, so that keys sort as their numbers do.
var (
	be32 = binary.BigEndian.AppendUint32
	be64 = binary.BigEndian.AppendUint64
)

// flowBlock is the number of flow records per F key (and tails per Q key).
const flowBlock = 64

// timeBucket is the width of a time bucket, in ns.
const timeBucket = int64(60e9)

// CheckpointEvery is how many records lie between two stored offsets.
// Schema 5 took it from 32 to 128: 0.46 → 0.15 MB on the 2 GB real
// capture's index, for reading at most 127 records (32 KB of its
// 254-byte frames, within the one 64 KiB read a record costs anyway)
// past an offset instead of 31 when extracting.
const CheckpointEvery = 128

// checkpointChunk is how many offsets one C key holds.
const checkpointChunk = 1024

// metaKey names a metadata value.
type metaKey string

// Metadata names.
const (
	metaVersion    metaKey = "version"    // SchemaVersion
	metaState      metaKey = "state"      // "building" while a run writes, "complete" after its commit
	metaGen        metaKey = "gen"        // generation of the last committed run
	metaNextID     metaKey = "nextid"     // the next flow ID
	metaCaptures   metaKey = "captures"   // number of committed captures
	metaSettings   metaKey = "settings"   // the flow semantics the index was built with (JSON)
	metaClock      metaKey = "clock"      // the latest packet time of the archive, ns
	metaLive       metaKey = "live"       // IDs of the flows live at the commit (an ID list)
	metaState0     metaKey = "statelen"   // number of S chunks
	metaProvBlocks metaKey = "provblocks" // first IDs of the blocks with G/R keys (an ID list)
	metaProvLate   metaKey = "provlate"   // IDs of the flows with N keys (an ID list)
)

func (k metaKey) encode() []byte     { return append([]byte{tagMeta}, k...) }
func (k metaKey) String() string     { return "M/" + string(k) }
func decodeMetaKey(b []byte) metaKey { return metaKey(b[1:]) }

// captureKey is the key of capture i's record.
type captureKey uint32

func (k captureKey) encode() []byte {
	return be32([]byte{tagCapture}, uint32(k))
}
func (k captureKey) String() string { return fmt.Sprintf("K/%d", uint32(k)) }

// checkpointKey is a chunk of a capture's record offsets.
type checkpointKey struct{ capture, chunk uint32 }

func (k checkpointKey) encode() []byte { return be32(be32([]byte{tagCheckpoint}, k.capture), k.chunk) }
func (k checkpointKey) String() string { return fmt.Sprintf("C/%d/%d", k.capture, k.chunk) }

// resumeKey is a gzip checkpoint of a capture (resume.go), by the
// decompressed offset it resumes at: the checkpoint for a record is the
// last key at or before its offset.
type resumeKey struct {
	capture uint32
	out     uint64
}

func (k resumeKey) encode() []byte { return be64(be32([]byte{tagResume}, k.capture), k.out) }
func (k resumeKey) String() string { return fmt.Sprintf("Z/%d/%d", k.capture, k.out) }

// blockKey is the key of a block of flows (F, G, Q or R).
type blockKey struct {
	tag   byte
	first uint64
}

func (k blockKey) encode() []byte { return be64([]byte{k.tag}, k.first) }
func (k blockKey) String() string { return fmt.Sprintf("%c/%d", k.tag, k.first) }
func decodeBlockKey(b []byte) (blockKey, error) {
	if len(b) != 9 {
		return blockKey{}, fmt.Errorf("%w: block key %x", errCorrupt, b)
	}
	return blockKey{b[0], binary.BigEndian.Uint64(b[1:])}, nil
}

// blockOf is the first ID of the block that holds flow id.
func blockOf(id uint64) uint64 { return (id-1)/flowBlock*flowBlock + 1 }

// lateGroupKey is the key of a group of flows of the span of IDs from
// span on that outlived their blocks: flows that ended in run gen (L),
// the nth group that run wrote, or flows live at the commit of run gen
// (N). A span's groups are the keys with its prefix (lateBlock); those
// of a run that did not commit sort after the committed runs' (lateFrom).
type lateGroupKey struct {
	tag    byte
	span   uint64
	gen, n uint32
}

func (k lateGroupKey) encode() []byte {
	return be32(be32(be64([]byte{k.tag}, k.span), k.gen), k.n)
}
func (k lateGroupKey) String() string { return fmt.Sprintf("%c/%d/%d/%d", k.tag, k.span, k.gen, k.n) }

// lateBlock is the prefix of span's groups.
func lateBlock(tag byte, span uint64) []byte { return be64([]byte{tag}, span) }

// lateFrom is where span's groups of runs gen and later begin.
func lateFrom(tag byte, span uint64, gen uint32) []byte { return be32(lateBlock(tag, span), gen) }

func decodeLateGroupKey(b []byte) (lateGroupKey, error) {
	if len(b) != 17 || b[0] != tagLate && b[0] != tagLateProv {
		return lateGroupKey{}, fmt.Errorf("%w: late group key %x", errCorrupt, b)
	}
	return lateGroupKey{b[0], binary.BigEndian.Uint64(b[1:]), binary.BigEndian.Uint32(b[9:]), binary.BigEndian.Uint32(b[13:])}, nil
}

// chunkKey is a full posting chunk of a flow.
type chunkKey struct {
	id    uint64
	chunk uint32
}

func (k chunkKey) encode() []byte { return be32(be64([]byte{tagChunk}, k.id), k.chunk) }
func (k chunkKey) String() string { return fmt.Sprintf("P/%d/%d", k.id, k.chunk) }
func decodeChunkKey(b []byte) (chunkKey, error) {
	if len(b) != 13 || b[0] != tagChunk {
		return chunkKey{}, fmt.Errorf("%w: chunk key %x", errCorrupt, b)
	}
	return chunkKey{binary.BigEndian.Uint64(b[1:]), binary.BigEndian.Uint32(b[9:])}, nil
}

// listKey is a chunk of the ID list of a field's value: A (gen unused)
// or B.
type listKey struct {
	final bool
	field Field
	value []byte // fixed width within a field, so value ranges are key ranges
	gen   uint32 // B only
	first uint64 // the list's smallest ID
}

func (k listKey) prefix() []byte {
	tag := byte(tagList)
	if k.final {
		tag = tagFinalList
	}
	return append([]byte{tag, byte(k.field)}, k.value...)
}

func (k listKey) encode() []byte {
	b := k.prefix()
	if k.final {
		b = be32(b, k.gen)
	}
	return be64(b, k.first)
}

func (k listKey) String() string {
	if k.final {
		return fmt.Sprintf("B/%v/%x/gen%d/%d", k.field, k.value, k.gen, k.first)
	}
	return fmt.Sprintf("A/%v/%x/%d", k.field, k.value, k.first)
}

// decodeListKey splits an A or B key whose value has width vlen.
func decodeListKey(b []byte, vlen int) (listKey, error) {
	k := listKey{final: len(b) > 0 && b[0] == tagFinalList}
	want := 2 + vlen + 8
	if k.final {
		want += 4
	}
	if len(b) != want {
		return k, fmt.Errorf("%w: list key %x", errCorrupt, b)
	}
	k.field = Field(b[1])
	k.value = b[2 : 2+vlen]
	rest := b[2+vlen:]
	if k.final {
		k.gen = binary.BigEndian.Uint32(rest)
		rest = rest[4:]
	}
	k.first = binary.BigEndian.Uint64(rest)
	return k, nil
}

// addrKey is the key of a block of sorted (address, ID) pairs of one
// segment of flows: the block's first pair.
type addrKey struct {
	field   Field
	ver     uint8  // 4 or 6
	segment uint64 // the segment's first flow ID
	addr    []byte // 4 or 16 bytes
	id      uint64
}

// addrSegmentPrefix is the key prefix of one segment's blocks of a field.
func addrSegmentPrefix(f Field, ver uint8, segment uint64) []byte {
	return be64([]byte{tagAddr, byte(f), ver}, segment)
}

func (k addrKey) encode() []byte {
	b := append(addrSegmentPrefix(k.field, k.ver, k.segment), k.addr...)
	return be64(b, k.id)
}

func (k addrKey) String() string {
	a, _ := netip.AddrFromSlice(k.addr)
	return fmt.Sprintf("H/%v/%d/seg%d/%v/%d", k.field, k.ver, k.segment, a, k.id)
}

func decodeAddrKey(b []byte) (addrKey, error) {
	if len(b) < 11 || b[0] != tagAddr {
		return addrKey{}, fmt.Errorf("%w: address key %x", errCorrupt, b)
	}
	k := addrKey{field: Field(b[1]), ver: b[2], segment: binary.BigEndian.Uint64(b[3:])}
	alen := 4
	if k.ver == 6 {
		alen = 16
	}
	if len(b) != 11+alen+8 {
		return addrKey{}, fmt.Errorf("%w: address key %x", errCorrupt, b)
	}
	k.addr = b[11 : 11+alen]
	k.id = binary.BigEndian.Uint64(b[11+alen:])
	return k, nil
}

// inCaptureKey is a chunk of the list of flows with packets in a capture.
type inCaptureKey struct {
	capture uint32
	first   uint64
}

func (k inCaptureKey) encode() []byte { return be64(be32([]byte{tagInCapture}, k.capture), k.first) }
func (k inCaptureKey) String() string { return fmt.Sprintf("D/%d/%d", k.capture, k.first) }
func decodeInCaptureKey(b []byte) (inCaptureKey, error) {
	if len(b) != 13 || b[0] != tagInCapture {
		return inCaptureKey{}, fmt.Errorf("%w: capture list key %x", errCorrupt, b)
	}
	return inCaptureKey{binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint64(b[5:])}, nil
}

// stateKey is a chunk of the live state.
type stateKey uint32

func (k stateKey) encode() []byte { return be32([]byte{tagState}, uint32(k)) }
func (k stateKey) String() string { return fmt.Sprintf("S/%d", uint32(k)) }

// prefixEnd returns the smallest key greater than every key with the
// prefix p (an exclusive upper bound).
func prefixEnd(p []byte) []byte {
	e := append([]byte(nil), p...)
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] < 0xff {
			e[i]++
			return e[:i+1]
		}
	}
	return nil
}

// FormatKey prints a raw store key in the notation above, for debugging
// and tests.
func FormatKey(b []byte) string {
	if len(b) == 0 {
		return "(empty)"
	}
	var s fmt.Stringer
	var err error
	switch b[0] {
	case tagMeta:
		s = decodeMetaKey(b)
	case tagCapture:
		if len(b) == 5 {
			s = captureKey(binary.BigEndian.Uint32(b[1:]))
		}
	case tagCheckpoint:
		if len(b) == 9 {
			s = checkpointKey{binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint32(b[5:])}
		}
	case tagFlows, tagTails, tagFlowsProv, tagTailsProv:
		s, err = decodeBlockKey(b)
	case tagLate, tagLateProv:
		s, err = decodeLateGroupKey(b)
	case tagChunk:
		s, err = decodeChunkKey(b)
	case tagList, tagFinalList:
		if len(b) >= 2 {
			s, err = decodeListKey(b, fieldWidth(Field(b[1])))
		}
	case tagAddr:
		s, err = decodeAddrKey(b)
	case tagInCapture:
		s, err = decodeInCaptureKey(b)
	case tagResume:
		if len(b) == 13 {
			s = resumeKey{binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint64(b[5:])}
		}
	case tagState:
		if len(b) == 5 {
			s = stateKey(binary.BigEndian.Uint32(b[1:]))
		}
	}
	if s == nil || err != nil {
		return "?" + strings.ToUpper(hex.EncodeToString(b))
	}
	return s.String()
}
