package query

import (
	"errors"
	"strings"
	"testing"
)

func TestParseNormalForm(t *testing.T) {
	cases := []struct{ in, want string }{
		{"flow 12", "flow 12"},
		{"flow 10-20", "flow 10-20"},
		{"FLOW 7-7", "flow 7"},
		{"host 10.0.0.1", "host 10.0.0.1"},
		{"src host 10.0.0.1", "src host 10.0.0.1"},
		{"dst host 2001:DB8::1", "dst host 2001:db8::1"},
		{"src or dst host 1.2.3.4", "host 1.2.3.4"},
		{"src and dst net 10.0.0.0/8", "src and dst net 10.0.0.0/8"},
		{"net 10.1.2.3/8", "net 10.0.0.0/8"},
		{"net 10.1.0.0 mask 255.255.0.0", "net 10.1.0.0/16"},
		{"net 2001:db8::/32", "net 2001:db8::/32"},
		{"net 192.0.2.7", "net 192.0.2.7/32"},
		{"port 80", "port 80"},
		{"dst port https", "dst port 443"},
		{"portrange 8000-8080", "portrange 8000-8080"},
		{"src portrange 1-1023", "src portrange 1-1023"},
		{"proto tcp", "tcp"},
		{"proto 47", "proto 47"},
		{"proto gre", "proto 47"},
		{"ip proto 17", "ip and udp"},
		{"ip6 proto icmp6", "ip6 and icmp6"},
		{"tcp", "tcp"}, {"UDP", "udp"}, {"icmp", "icmp"}, {"icmp6", "icmp6"}, {"ip", "ip"}, {"ip6", "ip6"},
		{"vlan 100", "vlan 100"},
		{"vlan", "vlan"},
		{"ether host AA:bb:cc:dd:ee:ff", "ether host aa:bb:cc:dd:ee:ff"},
		{"ether src aa:bb:cc:dd:ee:ff", "ether src host aa:bb:cc:dd:ee:ff"},
		{"ether dst host aa:bb:cc:dd:ee:ff", "ether dst host aa:bb:cc:dd:ee:ff"},
		{"after 2024-05-01T10:00:00Z", "after 2024-05-01T10:00:00Z"},
		{"before 2024-05-01", "before 2024-05-01T00:00:00Z"},
		{"after 2024-05-01T12:00:00.5+02:00", "after 2024-05-01T10:00:00.5Z"},
		{"packets > 100", "packets > 100"},
		{"bytes >= 1.5M", "bytes >= 1500000"},
		{"packets = 2", "packets == 2"},
		{"bytes < 10k", "bytes < 10000"},
		{"community 1:wCb3OG7yAFWelaUydu0D+125CLM=", "community 1:wCb3OG7yAFWelaUydu0D+125CLM="},
		{"tunnel", "tunnel"},
		{"tunnel VXLAN", "tunnel vxlan"},
		{"vni 42", "vni 42"},
		{"inner and host 10.0.0.1", "inner and host 10.0.0.1"},
		{"outer or tunnel gre", "outer or tunnel gre"},
		// Precedence: not > and > or.
		{"not tcp and port 53", "not tcp and port 53"},
		{"host 1.1.1.1 or (host 2.2.2.2 and port 80)", "host 1.1.1.1 or (host 2.2.2.2 and port 80)"},
		{"host 1.1.1.1 and port 80 or host 2.2.2.2", "(host 1.1.1.1 and port 80) or host 2.2.2.2"},
		{"(host 1.1.1.1 or host 2.2.2.2) and port 80", "(host 1.1.1.1 or host 2.2.2.2) and port 80"},
		{"not (tcp or udp)", "not (tcp or udp)"},
		{"not (tcp and port 80)", "not (tcp and port 80)"},
		{"! tcp && port 1 || udp", "(not tcp and port 1) or udp"},
		// tcpdump's spellings (pcap-filter(7)).
		{"tcp port 80", "tcp and port 80"},
		{"udp dst port 53", "udp and dst port 53"},
		{"tcp src port http", "tcp and src port 80"},
		{"ip host 10.0.0.1", "ip and host 10.0.0.1"},
		{"ip6 src host ::1", "ip6 and src host ::1"},
		{"ip6 net 2001:db8::/32", "ip6 and net 2001:db8::/32"},
		{"src 10.0.0.1", "src host 10.0.0.1"},
		{"dst 10.0.0.0/8", "dst net 10.0.0.0/8"},
		{"ip6 dst 2001:db8::1", "ip6 and dst host 2001:db8::1"},
		{"tcp portrange 1-1023", "tcp and portrange 1-1023"},
		{"net 10.77", "net 10.77.0.0/16"},
		{"net 192.0.2", "net 192.0.2.0/24"},
		{"src net 10", "src net 10.0.0.0/8"},
		{"port 80 or 53", "port 80 or port 53"},
		{"port 80 or 53 or https", "port 80 or port 53 or port 443"},
		{"tcp port 80 or 53", "(tcp and port 80) or (tcp and port 53)"},
		{"host 10.0.0.1 or 10.0.0.2", "host 10.0.0.1 or host 10.0.0.2"},
		{"src 10.0.0.1 or 10.0.0.2", "src host 10.0.0.1 or src host 10.0.0.2"},
		{"port 80 and not 53", "port 80 and not port 53"},
		{"flow 1 or 5-7", "flow 1 or flow 5-7"},
		{"vlan 100 or 200", "vlan 100 or vlan 200"},
		{"ip6 proto 6", "ip6 and tcp"},
		{"host ::ffff:10.0.0.1", "host ::ffff:10.0.0.1"},
		{"net ::ffff:0:0/96", "net ::ffff:0.0.0.0/96"},
		{"!(tcp)", "not tcp"},
		{"not not ip6", "not not ip6"},
		{"  port   80  ", "port 80"},
	}
	for _, c := range cases {
		e, err := Parse(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got := e.String(); got != c.want {
			t.Errorf("%q: normal form %q, want %q", c.in, got, c.want)
		}
		// The normal form parses to itself.
		e2, err := Parse(e.String())
		if err != nil || e2.String() != e.String() {
			t.Errorf("%q: normal form %q does not reparse to itself (%v)", c.in, e.String(), err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		in   string
		col  int // 1-based column of the caret
		want string
	}{
		{"proto and port 1", 7, "expected a protocol name or number after 'proto'"},
		{"host 300.1.1.1", 6, "invalid IP address"},
		{"net 10.0.0.0/33", 5, "invalid prefix length /33"},
		{"port 70000", 6, "out of range"},
		{"portrange 90-80", 11, "reversed"},
		{"portrange 1-70000", 11, "out of range"},
		{"vlan 5000", 6, "out of range"},
		{"flow 0", 6, "flow IDs start at 1"},
		{"host", 5, "expected an IP address after 'host'"},
		{"host 10.0.0.1 and", 18, "expected a filter primitive"},
		{"(host 1.2.3.4", 14, "expected 'and', 'or' or ')'"},
		{"host 1.2.3.4)", 13, "expected 'and', 'or' or the end of the filter"},
		{"tcp or udp and not port 80", 16, "'and' after 'or' needs parentheses"},
		{"a or b", 1, "expected a filter primitive"},
		{"host foo.example.com", 6, "host names are not resolved"},
		{"src foo.example.com", 5, "host names are not resolved"},
		{"tcp and 80", 9, "a value needs a primitive"},
		{"80", 1, "a value needs a primitive"},
		{"and tcp", 1, "expected a filter primitive"},
		{"xor", 1, "expected a filter primitive"},
		{"host 10.0.0.0/8", 6, "is a network: use 'net"},
		{"port 80-90", 6, "use 'portrange"},
		{"port nosuchservice", 6, "unknown service"},
		{"proto nosuch", 7, "unknown protocol"},
		{"packets > lots", 11, "expected a number"},
		{"packets 5", 9, "expected a comparison"},
		{"after yesterday", 7, "expected a time"},
		{"ether host 1.2.3.4", 12, "expected a MAC address"},
		{"net 10.0.0.0 mask 255.0.255.0", 19, "invalid netmask"},
		{"host 10.0.0.1 mask 255.0.0.0", 20, "'mask' goes only with 'net'"},
		{"host 10.0.0.1 # comment", 15, "unexpected character"},
		{"community abc", 11, "expected a Community ID"},
		{"src tcp", 5, "expected host, net, port or portrange after 'src'"},
		{"tunnel mpls", 8, "unknown tunnel type"},
		{"vni x", 5, "expected a tunnel ID"},
	}
	for _, c := range cases {
		_, err := Parse(c.in)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: got %v, want a syntax error", c.in, err)
			continue
		}
		if se.Offset+1 != c.col || !strings.Contains(se.Msg, c.want) {
			t.Errorf("%q: column %d %q, want column %d containing %q\n%s", c.in, se.Offset+1, se.Msg, c.col, c.want, se.Caret())
		}
		caret := se.Caret()
		lines := strings.Split(caret, "\n")
		if len(lines) != 2 || strings.Index(lines[1], "^") != 2+c.col-1 {
			t.Errorf("%q: caret misplaced:\n%s", c.in, caret)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for _, s := range []string{"flow 1234", "host 10.1.2.3 and port 443", "ip and net 10.0.0.0/8 and (port 80 or port 443) and not proto udp"} {
		b.Run(strings.Fields(s)[0]+"-"+strings.Fields(s)[1], func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := Parse(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
