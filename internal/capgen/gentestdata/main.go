// Command gentestdata writes the generated captures under testdata/.
// Run it from the repository root: go run ./internal/capgen/gentestdata
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/pcapflow/pcapflow/internal/capgen"
)

func main() {
	dir := "testdata"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	for _, f := range capgen.Files() {
		p := filepath.Join(dir, f.Name)
		if err := os.WriteFile(p, f.Make(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("wrote", p)
	}
}
