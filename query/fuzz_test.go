package query

import (
	"errors"
	"testing"
)

// FuzzParse: any input parses or gives a SyntaxError whose caret lies in
// the filter; a parsed filter's normal form parses to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"host 10.0.0.1 and port 80", "not (tcp or udp) && vlan 100", "net 2001:db8::/32 or ether host aa:bb:cc:dd:ee:ff",
		"flow 1-20 and packets > 1.5K", "after 2024-05-01T10:00:00Z and before 2024-05-02", "community 1:wCb3OG7yAFWelaUydu0D+125CLM=",
		"src or dst portrange 1-1023", "tunnel vxlan and vni 42 and inner", "proto and port 1", "((((", "host 300.1.1.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("%q: error %T %v is not a SyntaxError", s, err, err)
			}
			if se.Offset < 0 || se.Offset > len(s) {
				t.Fatalf("%q: caret at %d outside the filter", s, se.Offset)
			}
			return
		}
		if e == nil {
			return
		}
		e2, err := Parse(e.String())
		if err != nil || e2.String() != e.String() {
			t.Fatalf("%q: normal form %q does not reparse to itself: %v", s, e.String(), err)
		}
	})
}
