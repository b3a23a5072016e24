// Command cores measures how much this machine gives a second core, on
// three kinds of work, so that pcapflow's own scaling (docs/BENCHMARKS.md:
// GOMAXPROCS=1 against 2) can be read against what the hardware allows:
//
//	go run ./bench/cores [-rounds 5]
//
// Each kind runs the same fixed work on 1 goroutine and on N (one per
// core), and prints N × (1-goroutine time) / (N-goroutine time): the
// speedup a perfect program would get. Virtual CPUs that are hardware
// threads of one physical core give integer code much less than N.
//
//   - ilp: independent integer additions and XORs, four chains (the
//     kind of code decoding and hashing is: it needs the core's ALUs);
//   - latency: a chain of dependent loads through 256 MB (the flow
//     table's cache misses: it needs the memory system);
//   - sha256: SHA-256 with the CPU's SHA instructions, where present.
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"
)

var sink uint64

func ilp(n int) {
	var a, b, c, d uint64 = 1, 2, 3, 4
	for j := 0; j < n; j++ {
		a += b ^ uint64(j)
		b += c
		c += d ^ a
		d += a
	}
	sink += a + b + c + d
}

func latency(table []uint32, n int) {
	x := uint32(0)
	for i := 0; i < n; i++ {
		x = table[x] ^ uint32(i&7)
	}
	sink += uint64(x)
}

func sha(buf []byte, n int) {
	h := sha256.New()
	for i := 0; i < n; i++ {
		h.Write(buf)
	}
	sink += uint64(h.Sum(nil)[0])
}

// timed runs work on g goroutines at once and returns the wall time.
func timed(g int, work func()) time.Duration {
	var wg sync.WaitGroup
	t := time.Now()
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	wg.Wait()
	return time.Since(t)
}

func main() {
	rounds := flag.Int("rounds", 5, "rounds; the median speedup is printed")
	flag.Parse()
	n := runtime.GOMAXPROCS(0)
	const entries = 1 << 26 // 256 MB of uint32
	table := make([]uint32, entries)
	for i := range table {
		table[i] = uint32(uint64(i) * 2654435761 % entries)
	}
	buf := make([]byte, 64<<10)
	kinds := []struct {
		name string
		work func()
	}{
		{"ilp", func() { ilp(1 << 28) }},
		{"latency", func() { latency(table, 1<<22) }},
		{"sha256", func() { sha(buf, 3000) }},
	}
	fmt.Printf("%d cores (GOMAXPROCS), %d rounds, medians\n", n, *rounds)
	for _, k := range kinds {
		var speedups []float64
		var one, all []time.Duration
		for r := 0; r < *rounds; r++ {
			t1 := timed(1, k.work)
			tn := timed(n, k.work)
			one, all = append(one, t1), append(all, tn)
			speedups = append(speedups, float64(n)*t1.Seconds()/tn.Seconds())
		}
		slices.Sort(speedups)
		slices.Sort(one)
		slices.Sort(all)
		fmt.Printf("%-8s 1 goroutine %8v   %d goroutines %8v   speedup %.2fx (of %d)\n",
			k.name, one[len(one)/2].Round(time.Millisecond), n, all[len(all)/2].Round(time.Millisecond),
			speedups[len(speedups)/2], n)
	}
}
