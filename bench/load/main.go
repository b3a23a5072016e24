// Command load drives a pcapflow server with many concurrent clients and
// reports throughput, latency and errors per kind of request:
//
//	go run ./bench/load -url http://127.0.0.1:8080 -c 200 -d 30s
//
// The mix: 40% count and 30% flows (limit 100) for a random host or port
// filter, 20% extract of one random flow, 10% its stream. Every answer
// must be 200, or 503 where the server sheds heavy requests beyond its
// bound (counted apart); anything else is counted as an error and its
// first few printed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "the server")
	clients := flag.Int("c", 200, "concurrent clients")
	dur := flag.Duration("d", 30*time.Second, "how long")
	token := flag.String("token", os.Getenv("PCAPFLOW_TOKEN"), "bearer token")
	flag.Parse()

	tr := &http.Transport{MaxIdleConnsPerHost: *clients, MaxConnsPerHost: *clients}
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	get := func(ctx context.Context, path string) (int, int64, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", *base+path, nil)
		if *token != "" {
			req.Header.Set("Authorization", "Bearer "+*token)
		}
		r, err := hc.Do(req)
		if err != nil {
			return 0, 0, err
		}
		defer r.Body.Close()
		n, err := io.Copy(io.Discard, r.Body)
		return r.StatusCode, n, err
	}
	// What the archive holds: its flows, and some of their addresses.
	var st struct{ Flows uint64 }
	req, _ := http.NewRequest("GET", *base+"/api/status", nil)
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	r, err := hc.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	json.NewDecoder(r.Body).Decode(&st)
	r.Body.Close()
	if st.Flows == 0 {
		fmt.Fprintln(os.Stderr, "the server holds no flows")
		os.Exit(1)
	}
	hosts := sampleHosts(hc, *base, *token)

	type sample struct {
		kind  string
		d     time.Duration
		bytes int64
		err   string
		shed  bool // 503 with Retry-After: the server's bound on heavy requests
	}
	var mu sync.Mutex
	var samples []sample
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for ctx.Err() == nil {
				var kind, path string
				filter := fmt.Sprintf("port %d", []int{80, 53, 443, 22}[rng.IntN(4)])
				if len(hosts) > 0 && rng.IntN(2) == 0 {
					filter = "host " + hosts[rng.IntN(len(hosts))]
				}
				id := 1 + rng.Uint64N(st.Flows)
				switch x := rng.IntN(10); {
				case x < 4:
					kind, path = "count", "/api/count?filter="+url.QueryEscape(filter)
				case x < 7:
					kind, path = "flows", "/api/flows?limit=100&filter="+url.QueryEscape(filter)
				case x < 9:
					kind, path = "extract", "/api/extract?filter="+url.QueryEscape(fmt.Sprintf("flow %d", id))
				default:
					kind, path = "stream", fmt.Sprintf("/api/streams/%d", id)
				}
				t0 := time.Now()
				code, n, err := get(context.Background(), path)
				s := sample{kind: kind, d: time.Since(t0), bytes: n}
				switch {
				case err != nil:
					s.err = err.Error()
				case code == http.StatusServiceUnavailable:
					s.shed = true
				case code != 200:
					s.err = fmt.Sprintf("HTTP %d for %s", code, path)
				}
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
			}
		}(uint64(c))
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("%d clients for %v: %d requests, %.0f per second\n\n", *clients, el.Round(time.Millisecond), len(samples), float64(len(samples))/el.Seconds())
	fmt.Println("| request | count | per second | p50 | p99 | max | MB out | 503 (shed) | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	errs := 0
	for _, kind := range []string{"count", "flows", "extract", "stream", "all"} {
		var ds []time.Duration
		var bytes int64
		ne, shed := 0, 0
		for _, s := range samples {
			if kind != "all" && s.kind != kind {
				continue
			}
			ds = append(ds, s.d)
			bytes += s.bytes
			if s.shed {
				shed++
			}
			if s.err != "" {
				ne++
				if kind == "all" && errs < 5 {
					fmt.Fprintln(os.Stderr, "error:", s.err)
					errs++
				}
			}
		}
		if len(ds) == 0 {
			continue
		}
		slices.Sort(ds)
		q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
		fmt.Printf("| %s | %d | %.0f | %v | %v | %v | %.1f | %d | %d |\n", kind, len(ds), float64(len(ds))/el.Seconds(),
			q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond), ds[len(ds)-1].Round(time.Microsecond), float64(bytes)/1e6, shed, ne)
	}
}

// sampleHosts takes a few addresses from the archive's first flows.
func sampleHosts(hc *http.Client, base, token string) []string {
	req, _ := http.NewRequest("GET", base+"/api/flows?limit=200", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	r, err := hc.Do(req)
	if err != nil {
		return nil
	}
	defer r.Body.Close()
	dec := json.NewDecoder(r.Body)
	seen := map[string]bool{}
	var out []string
	for {
		var f struct{ Src, Dst string }
		if dec.Decode(&f) != nil {
			return out
		}
		for _, a := range []string{f.Src, f.Dst} {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
}
