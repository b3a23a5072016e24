package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcapflow/pcapflow/internal/capgen"
)

type jsonFlow struct {
	ID     uint64 `json:"id"`
	Peer   uint64 `json:"peer"`
	Proto  string `json:"proto"`
	Src    string `json:"src"`
	Sport  int    `json:"sport"`
	Dport  int    `json:"dport"`
	Tunnel *struct {
		Type  string `json:"type"`
		ID    uint32 `json:"id"`
		Outer uint64 `json:"outer"`
		Depth int    `json:"depth"`
	} `json:"tunnel"`
	Packets uint64 `json:"packets"`
}

func parseFlows(t *testing.T, out string) []jsonFlow {
	t.Helper()
	var fs []jsonFlow
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var f jsonFlow
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		fs = append(fs, f)
	}
	return fs
}

// Every kind of tunnel: the inner conversation is two flows that name
// their tunnel and outer flow and link to each other; its streams are the
// inner payloads; extracting an inner flow writes the outer records; the
// tunnel filters select them, from a scan and from an index alike.
func TestTunnels(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tunnels.pcap")
	for _, f := range capgen.Files() {
		if f.Name == "tunnels.pcap" {
			os.WriteFile(p, f.Make(), 0o644)
		}
	}
	for _, indexed := range []bool{false, true} {
		if indexed {
			if r := runCLI(t, nil, "index", p); r.code != 0 {
				t.Fatal(r)
			}
		}
		flows := parseFlows(t, runCLI(t, nil, "flows", "-F", "json", p).stdout)
		byID := map[uint64]jsonFlow{}
		for _, f := range flows {
			byID[f.ID] = f
		}
		for _, tc := range capgen.TunnelCases {
			var cli []jsonFlow
			for _, f := range flows {
				if f.Tunnel != nil && f.Sport == int(tc.Port) && f.Tunnel.Type == tc.Type && f.Tunnel.ID == tc.ID && f.Proto == "tcp" {
					cli = append(cli, f)
				}
			}
			if len(cli) != 1 {
				t.Errorf("%s (indexed %v): %d client flows", tc.Name, indexed, len(cli))
				continue
			}
			f := cli[0]
			peer, ok := byID[f.Peer]
			if !ok || peer.Dport != int(tc.Port) || peer.Tunnel == nil || peer.Tunnel.ID != tc.ID {
				t.Errorf("%s: peer %+v", tc.Name, peer)
			}
			if outer, ok := byID[f.Tunnel.Outer]; !ok || outer.Tunnel != nil || f.Tunnel.Depth != 1 {
				t.Errorf("%s: outer flow %d (%+v), depth %d", tc.Name, f.Tunnel.Outer, outer, f.Tunnel.Depth)
			}
			dir := filepath.Join(t.TempDir(), "s")
			r := runCLI(t, nil, "streams", p, "-O", dir, "flow", fmt.Sprint(f.ID), "or", "flow", fmt.Sprint(f.Peer))
			if r.code != 0 {
				t.Fatal(r)
			}
			for id, want := range map[uint64]string{f.ID: tc.Request, f.Peer: tc.Response} {
				m, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("%d-tcp-*", id)))
				if len(m) != 1 {
					t.Errorf("%s: flow %d: no stream file", tc.Name, id)
					continue
				}
				if got, _ := os.ReadFile(m[0]); string(got) != want {
					t.Errorf("%s: flow %d: stream %q, want %q", tc.Name, id, got, want)
				}
			}
			out := filepath.Join(t.TempDir(), "x.pcap")
			if r := runCLI(t, nil, "extract", p, "-w", out, "flow", fmt.Sprint(f.ID)); r.code != 0 || countRecords(t, out) != int(f.Packets) {
				t.Errorf("%s: extract: %+v, %d records for %d packets", tc.Name, r, countRecords(t, out), f.Packets)
			}
		}
		for filter, want := range map[string]int{
			"vni 100":                  2,
			"vni 200 and tcp":          2,
			"tunnel geneve":            2,
			"tunnel gtpu":              2,
			"tunnel ipip":              6,
			"inner and port 31001":     4,
			"tunnel vxlan and vni 300": 0,
		} {
			r := runCLI(t, nil, "count", "-F", "json", p, filter)
			if !strings.HasPrefix(r.stdout, fmt.Sprintf(`{"flows":%d,`, want)) {
				t.Errorf("indexed %v: count %q: %s %s", indexed, filter, r.stdout, r.stderr)
			}
		}
		inner := runCLI(t, nil, "count", "-F", "json", p, "inner").stdout
		outer := runCLI(t, nil, "count", "-F", "json", p, "outer").stdout
		all := runCLI(t, nil, "count", "-F", "json", p).stdout
		var a, b, c struct{ Flows int }
		json.Unmarshal([]byte(inner), &a)
		json.Unmarshal([]byte(outer), &b)
		json.Unmarshal([]byte(all), &c)
		if a.Flows+b.Flows != c.Flows || a.Flows != 2*len(capgen.TunnelCases) {
			t.Errorf("inner %d + outer %d != all %d", a.Flows, b.Flows, c.Flows)
		}
	}
}
