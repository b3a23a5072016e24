package flow

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
)

// CommunityID returns the Community ID (version 1) of the connection
// that a flow with this key belongs to; both directions give the same ID.
// See https://github.com/corelight/community-id-spec.
func CommunityID(k *Key, seed uint16) string {
	return string(AppendCommunityID(nil, k, seed))
}

// AppendCommunityID appends the Community ID of k's connection.
func AppendCommunityID(b []byte, k *Key, seed uint16) []byte {
	sum := CommunityHash(k, seed)
	b = append(b, "1:"...)
	return base64.StdEncoding.AppendEncode(b, sum[:])
}

// CommunityHash is the SHA-1 behind CommunityID.
func CommunityHash(k *Key, seed uint16) [20]byte {
	var buf [2 + 16 + 16 + 2 + 4]byte
	alen := 4
	if k.IPVersion == 6 {
		alen = 16
	}
	src, dst := k.Src[:alen], k.Dst[:alen]
	sport, dport := k.SrcPort, k.DstPort
	oneWay := false
	if k.Proto == 1 || k.Proto == 58 {
		if t, ok := icmpCounterpart(k.Proto, sport); ok {
			dport = t
		} else {
			oneWay = true
		}
	}
	if !oneWay {
		c := bytes.Compare(src, dst)
		if c > 0 || (c == 0 && sport > dport) {
			src, dst = dst, src
			sport, dport = dport, sport
		}
	}
	b := buf[:0]
	b = binary.BigEndian.AppendUint16(b, seed)
	b = append(b, src...)
	b = append(b, dst...)
	b = append(b, k.Proto, 0)
	if k.HasPorts() {
		b = binary.BigEndian.AppendUint16(b, sport)
		b = binary.BigEndian.AppendUint16(b, dport)
	}
	return sha1.Sum(b)
}
