package flow

import (
	"net/netip"
	"testing"
)

func key(proto uint8, src string, sport uint16, dst string, dport uint16) Key {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	k := Key{Proto: proto, SrcPort: sport, DstPort: dport, IPVersion: 4}
	if s.Is6() {
		k.IPVersion = 6
		k.Src, k.Dst = s.As16(), d.As16()
	} else {
		a, b := s.As4(), d.As4()
		copy(k.Src[:], a[:])
		copy(k.Dst[:], b[:])
	}
	return k
}

// Vectors from the Community ID specification's baseline and Zeek's tests.
func TestCommunityIDVectors(t *testing.T) {
	cases := []struct {
		k    Key
		seed uint16
		want string
	}{
		{key(6, "1.2.3.4", 1122, "5.6.7.8", 3344), 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="},
		{key(6, "5.6.7.8", 3344, "1.2.3.4", 1122), 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="},
		{key(17, "1.2.3.4", 1122, "5.6.7.8", 3344), 0, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="},
		{key(1, "1.2.3.4", 8, "5.6.7.8", 0), 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="},
		{key(1, "5.6.7.8", 0, "1.2.3.4", 0), 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="},
		{key(58, "fe80:1:203:405:607:809:a0b:c0d", 128, "fe80:1011:1213:1415:1617:1819:1a1b:1c1d", 0), 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="},
		{key(46, "1.2.3.4", 0, "5.6.7.8", 0), 0, "1:ikv3kmf89luf73WPz1jOs49S768="},
		{key(6, "1.2.3.4", 1122, "5.6.7.8", 3344), 1, "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="},
		{key(17, "1.2.3.4", 1122, "5.6.7.8", 3344), 1, "1:OShq+iKDAMVouh/4bMxB9Sz4amw="},
		{key(1, "1.2.3.4", 8, "5.6.7.8", 0), 1, "1:9pr4ZGTICiuZoIh90RRYE2RyXpU="},
	}
	for _, c := range cases {
		if got := CommunityID(&c.k, c.seed); got != c.want {
			t.Errorf("%v seed %d: %s, want %s", c.k, c.seed, got, c.want)
		}
	}
}
