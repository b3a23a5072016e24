package interop

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/pcapflow/pcapflow"
	"github.com/pcapflow/pcapflow/export"
	"github.com/pcapflow/pcapflow/internal/capgen"
)

// sensorExport indexes a generated capture as one sensor would and
// exports it; it returns the export directory and the archive's
// conversation and packet totals.
func sensorExport(t *testing.T, name string, seed uint64, shift time.Duration) (string, int, int64) {
	t.Helper()
	c := capgen.Mix(capgen.MixOptions{Seed: seed, Bytes: 4 << 20, Active: 300, MeanPackets: 3})
	for i := range c.Packets {
		c.Packets[i].TS += int64(shift)
	}
	var b bytes.Buffer
	if err := c.WritePcap(&b, capgen.PcapOptions{Nanos: true}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, name+".pcap")
	os.WriteFile(p, b.Bytes(), 0o644)
	ctx := context.Background()
	idx := filepath.Join(dir, "idx")
	if _, err := pcapflow.Index(ctx, idx, []string{p}, nil); err != nil {
		t.Fatal(err)
	}
	a, err := pcapflow.Open(idx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	out := filepath.Join(dir, "export")
	if _, err := export.Parquet(ctx, a, out, &export.Options{Sensor: name, Final: true}); err != nil {
		t.Fatal(err)
	}
	convs, pkts := 0, int64(0)
	for c, err := range a.Conversations(ctx, pcapflow.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		convs++
		pkts += int64(c.A.Packets)
		if c.B != nil {
			pkts += int64(c.B.Packets)
		}
	}
	return out, convs, pkts
}

// DuckDB reads an export: rows and packet sums equal the conversations,
// the columns have the intended types, the day partitions are seen, and
// a join finds the conversations two sensors both saw.
func TestDuckDBReadsTheExport(t *testing.T) {
	day := 24 * time.Hour
	s1, convs1, pkts1 := sensorExport(t, "sensor-a", 5, 0)
	s2, convs2, _ := sensorExport(t, "sensor-b", 5, 0) // the same traffic, seen by a second sensor
	s3, _, _ := sensorExport(t, "sensor-c", 6, day)    // another day
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	scan := func(dir string) string {
		return fmt.Sprintf("read_parquet('%s/**/*.parquet', hive_partitioning = true)", dir)
	}
	var rows, pkts int64
	if err := db.QueryRow("SELECT count(*), sum(orig_pkts + resp_pkts) FROM "+scan(s1)).Scan(&rows, &pkts); err != nil {
		t.Fatal(err)
	}
	if int(rows) != convs1 || pkts != pkts1 {
		t.Fatalf("DuckDB: %d rows, %d packets; the archive: %d conversations, %d packets", rows, pkts, convs1, pkts1)
	}
	// Types: timestamps as timestamps, ports as integers, lists as lists.
	want := map[string]string{
		"ts": "TIMESTAMP WITH TIME ZONE", "uid": "VARCHAR", "id.orig_h": "VARCHAR", "id.orig_p": "INTEGER", "id.resp_p": "INTEGER",
		"duration": "DOUBLE", "orig_bytes": "BIGINT", "orig_pkts": "BIGINT", "conn_state": "VARCHAR",
		"tunnel_parents": "VARCHAR[]", "vlan": "INTEGER[]", "orig_flow": "BIGINT", "resp_flow": "BIGINT", "date": "DATE",
	}
	tr, err := db.Query("DESCRIBE SELECT * FROM " + scan(s1))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for tr.Next() {
		var name, typ string
		var null, key, def, extra sql.NullString
		if err := tr.Scan(&name, &typ, &null, &key, &def, &extra); err != nil {
			t.Fatal(err)
		}
		got[name] = typ
	}
	tr.Close()
	for col, typ := range want {
		if got[col] != typ {
			t.Errorf("column %s: %s, want %s", col, got[col], typ)
		}
	}
	// Partitions: one day per sensor here; a query on one day reads one.
	var days int
	all := fmt.Sprintf("read_parquet(['%s/**/*.parquet', '%s/**/*.parquet', '%s/**/*.parquet'], hive_partitioning = true)", s1, s2, s3)
	if err := db.QueryRow("SELECT count(DISTINCT date) FROM " + all).Scan(&days); err != nil || days != 2 {
		t.Fatalf("days: %d (%v), want 2", days, err)
	}
	// The fleet question: which sensors saw this conversation? A join on
	// the Community ID finds every conversation of sensor-a in sensor-b.
	var both int
	q := fmt.Sprintf(`SELECT count(*) FROM %s a JOIN %s b ON a.community_id = b.community_id AND a.ts = b.ts
		WHERE a.sensor = 'sensor-a' AND b.sensor = 'sensor-b'`, scan(s1), scan(s2))
	if err := db.QueryRow(q).Scan(&both); err != nil {
		t.Fatal(err)
	}
	if both < convs2*9/10 || both > convs2*11/10 {
		t.Errorf("the join found %d conversations both sensors saw, of %d", both, convs2)
	}
	// And the pivot back to packets: the row names its flows.
	var sensor string
	var flow int64
	if err := db.QueryRow("SELECT sensor, orig_flow FROM "+scan(s1)+" ORDER BY orig_bytes DESC LIMIT 1").Scan(&sensor, &flow); err != nil || sensor != "sensor-a" || flow < 1 {
		t.Errorf("pivot: %s flow %d (%v)", sensor, flow, err)
	}
}
