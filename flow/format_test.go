package flow_test

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/pcapflow/pcapflow/flow"
	"github.com/pcapflow/pcapflow/internal/capgen"
	"github.com/pcapflow/pcapflow/pcapio"
)

// CSV and JSON print the same values: every CSV row, read back with
// encoding/csv, equals the JSON object of the same flow column by column,
// including capture names that need quoting.
func TestCSVMatchesJSON(t *testing.T) {
	var flows []flow.Flow
	for _, c := range []*capgen.Capture{capgen.Basic(), capgen.Tunnels(), capgen.Reassembly()} {
		var got []flow.Flow
		tab := flow.NewTable(flow.Options{FirstID: uint64(len(flows) + 1), OnEnd: func(es []flow.Ended) {
			for _, e := range es {
				got = append(got, *e.Flow)
			}
		}})
		tab.SetCapture(len(flows) % 3)
		for _, p := range c.Packets {
			var pk pcapio.Packet
			pk.Decode(pcapio.LinkEthernet, p.Data)
			rec := pcapio.Record{Timestamp: p.TS, CapLen: len(p.Data), OrigLen: len(p.Data), Length: 16 + len(p.Data), Data: p.Data}
			tab.Add(&rec, &pk)
		}
		tab.Finish()
		slices.SortFunc(got, func(a, b flow.Flow) int { return cmp.Compare(a.ID, b.ID) })
		flows = append(flows, got...)
	}
	names := []string{"plain.pcap", `odd, "name".pcap`, " leading space.pcap"}
	name := func(i int) string { return names[i] }
	var cb, jb bytes.Buffer
	cw, _ := flow.NewWriter(&cb, flow.FormatCSV, &flow.WriterOptions{CaptureName: name})
	jw, _ := flow.NewWriter(&jb, flow.FormatJSON, &flow.WriterOptions{CaptureName: name})
	for i := range flows {
		cw.Write(&flows[i])
		jw.Write(&flows[i])
	}
	cw.Flush()
	jw.Flush()
	rows, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatalf("our CSV does not parse: %v", err)
	}
	if strings.Join(rows[0], ",") != strings.Join(flow.JSONFields, ",") {
		t.Fatalf("header %v", rows[0])
	}
	dec := json.NewDecoder(&jb)
	dec.UseNumber()
	for i, row := range rows[1:] {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			t.Fatalf("flow %d: json: %v", i, err)
		}
		for c, field := range flow.JSONFields {
			if got, want := row[c], csvValue(field, obj); got != want {
				t.Errorf("flow %v column %s: csv %q, json %q", obj["id"], field, got, want)
			}
		}
	}
	if err := dec.Decode(new(any)); err != io.EOF {
		t.Errorf("JSON has more flows than CSV")
	}
}

// csvValue is how a JSON member is spelled in CSV.
func csvValue(field string, obj map[string]any) string {
	v, ok := obj[field]
	if !ok {
		return ""
	}
	switch v := v.(type) {
	case json.Number:
		return v.String()
	case []any: // vlan
		var s []string
		for _, x := range v {
			s = append(s, fmt.Sprint(x))
		}
		return strings.Join(s, ";")
	case map[string]any: // tunnel
		return fmt.Sprintf("%v:%v:%v", v["type"], v["id"], v["outer"])
	}
	return fmt.Sprint(v)
}
