// Command alt compares commands on a noisy machine by running them in
// turn, one run of each per round, so that the machine's speed drifting
// (other jobs on a shared host) falls on all of them alike:
//
//	go run ./bench/alt [-n 40] [-setup 'cmd'] 'command A' 'command B' ...
//
// For each command it prints the median, quartiles and extremes of the
// wall time, the median CPU time (user + system) and peak RSS, and for
// two commands how many rounds each won. A command is split into fields
// at spaces (no shell); -setup, when given, runs before every run, outside
// the timing (for example 'rm -rf /tmp/x.idx' before an index run).
//
// Why not hyperfine: it runs all of one command's runs, then all of the
// next's. On this project's shared 2-vCPU host that once showed a 3.4 ms
// gain for a one-flow extract that alternating run by run (150 rounds)
// showed to be nothing (docs/BENCHMARKS.md, sixth session).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

type sample struct {
	wall, cpu time.Duration
	rss       int64 // KB
}

func run(line string) (sample, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return sample{}, fmt.Errorf("empty command")
	}
	cmd := exec.Command(f[0], f[1:]...)
	start := time.Now()
	err := cmd.Run()
	s := sample{wall: time.Since(start)}
	if st := cmd.ProcessState; st != nil {
		s.cpu = st.UserTime() + st.SystemTime()
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			s.rss = ru.Maxrss
		}
	}
	if err != nil {
		return s, fmt.Errorf("%s: %w", line, err)
	}
	return s, nil
}

func median[T int64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func quartile(v []time.Duration, q int) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, q*len(s)/4)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func main() {
	n := flag.Int("n", 40, "rounds")
	setup := flag.String("setup", "", "command run before every run, untimed")
	flag.Parse()
	cmds := flag.Args()
	if len(cmds) == 0 || *n < 1 {
		fmt.Fprintln(os.Stderr, "usage: alt [-n rounds] [-setup cmd] 'command A' 'command B' ...")
		os.Exit(2)
	}
	res := make([][]sample, len(cmds))
	for r := 0; r < *n; r++ {
		for i, c := range cmds {
			if *setup != "" {
				if _, err := run(*setup); err != nil {
					fmt.Fprintln(os.Stderr, "alt: setup:", err)
					os.Exit(1)
				}
			}
			s, err := run(c)
			if err != nil {
				fmt.Fprintln(os.Stderr, "alt:", err)
				os.Exit(1)
			}
			res[i] = append(res[i], s)
		}
	}
	fmt.Printf("%d rounds, the commands in turn\n", *n)
	fmt.Println("wall ms: median  p25  p75  min  max | cpu ms median | peak RSS MB median | command")
	for i, c := range cmds {
		var wall, cpu []time.Duration
		var rss []int64
		for _, s := range res[i] {
			wall, cpu, rss = append(wall, s.wall), append(cpu, s.cpu), append(rss, s.rss)
		}
		fmt.Printf("%s  %s  %s  %s  %s | %s | %d | %s\n", ms(median(wall)), ms(quartile(wall, 1)), ms(quartile(wall, 3)),
			ms(slices.Min(wall)), ms(slices.Max(wall)), ms(median(cpu)), median(rss)/1024, c)
	}
	if len(cmds) == 2 {
		a := 0
		for r := range res[0] {
			if res[0][r].wall < res[1][r].wall {
				a++
			}
		}
		fmt.Printf("rounds won: first %d, second %d\n", a, *n-a)
	}
}
