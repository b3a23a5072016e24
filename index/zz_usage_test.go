package index
import ("os";"testing";"sort";"encoding/binary")
func TestZZUsage(t *testing.T){
	p := os.Getenv("ZZIDX"); if p=="" {t.Skip()}
	s, err := Open(p); if err != nil {t.Fatal(err)}
	defer s.Close()
	u, err := s.Usage(); if err != nil {t.Fatal(err)}
	r, _ := s.RawSizes()
	var ks []string; for k := range r { ks = append(ks,k) }; sort.Strings(ks)
	var tot uint64
	for _, k := range ks { t.Logf("%s disk %9d raw key %9d val %9d n?", k, u[k], r[k][0], r[k][1]); tot += u[k] }
	t.Logf("total disk %d", tot)
}

func TestZZLists(t *testing.T){
	p := os.Getenv("ZZIDX"); if p=="" {t.Skip()}
	s, err := Open(p); if err != nil {t.Fatal(err)}
	defer s.Close()
	it, _ := s.db.NewIter(nil)
	defer it.Close()
	type st struct{ keys, bytes, ids int; modes [3]int }
	m := map[Field]*st{}
	for it.SeekGE([]byte{tagList}); it.Valid() && it.Key()[0] == tagList; it.Next() {
		f := Field(it.Key()[1])
		x := m[f]; if x == nil { x = &st{}; m[f] = x }
		v := it.Value()
		n, k := binary.Uvarint(v)
		x.keys++; x.bytes += len(v) + len(it.Key()); x.ids += int(n); x.modes[v[k]]++
	}
	for f, x := range m { t.Logf("%-12v keys %7d bytes %8d ids %8d B/id %.2f modes %v", f, x.keys, x.bytes, x.ids, float64(x.bytes)/float64(x.ids), x.modes) }
}
