package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

const versionUsage = `usage: pcapflow version   (or pcapflow --version)

Print the module version, the VCS revision and time it was built from,
and the Go version.
`

func runVersion(_ context.Context, e *env, args []string) error {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "--help" {
			fmt.Fprint(e.stdout, versionUsage)
			return nil
		}
		return usagef("version takes no arguments")
	}
	version, rev, when, modified := "(devel)", "unknown", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	fmt.Fprintf(e.stdout, "pcapflow %s\n", version)
	fmt.Fprintf(e.stdout, "revision %s", rev)
	if modified {
		fmt.Fprint(e.stdout, " (with local changes)")
	}
	if when != "" {
		fmt.Fprintf(e.stdout, " of %s", when)
	}
	fmt.Fprintf(e.stdout, "\n%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
