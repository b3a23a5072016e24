package index

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
)

// Key layout of the Pebble store. Every key starts with a one-byte tag;
// integers are big-endian so that byte order is numeric order. This file
// is the only place that knows the layout.
//
//	M <name>                          metadata (schema version, state, next flow ID, capture count)
//	K <capture u32>                   CaptureInfo (JSON)
//	F <first flow ID u64>             a block of up to flowBlock flow records, IDs first..
//	Q <first flow ID u64>             the last posting chunk of each flow of the same block
//	P <flow ID u64> <chunk u32>       a full posting chunk (ChunkSize records) of one flow
//	A <field u8> <value> <first u64>  list of flow IDs whose field has that value;
//	                                  first is the list's smallest ID
//
// Attribute values (fixed width within a field, so ranges are key ranges):
//
//	address      version u8 (4 or 6), address (4 or 16 bytes)
//	port         u16            VLAN  u16           protocol  u8
//	MAC          6 bytes        first/last time: minute number (ns / 60e9, floored), int64 with the sign bit flipped
//	packets/bytes: bit length of the value (log2 bucket), u8
//	community ID: the first two bytes of its SHA-1
//
// Buckets (time, packets, bytes, community) make those lookups inexact:
// flows in a boundary bucket are checked against their records.
const (
	tagMeta    = 'M'
	tagCapture = 'K'
	tagFlows   = 'F'
	tagTails   = 'Q'
	tagChunk   = 'P'
	tagAttr    = 'A'
)

// flowBlock is the number of flow records per F key (and tails per Q key).
const flowBlock = 64

// timeBucket is the width of a time bucket, in ns.
const timeBucket = int64(60e9)

// Metadata names.
const (
	metaVersion  = "version"
	metaState    = "state"
	metaNextID   = "nextid"
	metaCaptures = "captures"
)

// SchemaVersion identifies the key layout and record encodings; an index
// written with another version must be rebuilt.
const SchemaVersion = "pcapflow-index/1"

func metaKey(name string) []byte { return append([]byte{tagMeta}, name...) }

func captureKey(i int) []byte { return binary.BigEndian.AppendUint32([]byte{tagCapture}, uint32(i)) }

func blockKey(tag byte, first uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{tag}, first)
}

func chunkKey(id uint64, chunk uint32) []byte {
	k := binary.BigEndian.AppendUint64([]byte{tagChunk}, id)
	return binary.BigEndian.AppendUint32(k, chunk)
}

func chunkPrefix(id uint64) []byte { return binary.BigEndian.AppendUint64([]byte{tagChunk}, id) }

// attrPrefix is the key prefix of one field.
func attrPrefix(f Field) []byte { return []byte{tagAttr, byte(f)} }

// attrKey returns the key of the ID list chunk of field f, value v,
// starting at flow ID first.
func attrKey(f Field, v []byte, first uint64) []byte {
	k := make([]byte, 0, 2+len(v)+8)
	k = append(k, tagAttr, byte(f))
	k = append(k, v...)
	return binary.BigEndian.AppendUint64(k, first)
}

// splitAttrKey returns the value and first ID of an attribute key.
func splitAttrKey(k []byte) (v []byte, first uint64) {
	return k[2 : len(k)-8], binary.BigEndian.Uint64(k[len(k)-8:])
}

func addrValue(a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return append([]byte{4}, b[:]...)
	}
	b := a.As16()
	return append([]byte{6}, b[:]...)
}

func u16Value(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func timeValue(ns int64) []byte {
	b := ns / timeBucket
	if ns < 0 && ns%timeBucket != 0 {
		b-- // floor, so that buckets keep time order across the epoch
	}
	return binary.BigEndian.AppendUint64(nil, uint64(b)^(1<<63))
}

// log2Value buckets a count by its bit length: 0, 1, 2-3, 4-7, ...
func log2Value(n uint64) []byte { return []byte{byte(bits.Len64(n))} }

// log2Range returns the bucket's smallest and largest count.
func log2Range(b byte) (lo, hi uint64) {
	if b == 0 {
		return 0, 0
	}
	lo = 1 << (b - 1)
	if b == 64 {
		return lo, math.MaxUint64
	}
	return lo, 1<<b - 1
}
