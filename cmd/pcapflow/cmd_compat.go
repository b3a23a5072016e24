package main

import "context"

const compatUsage = `usage: pcapflow compat [pcap_flow options] CAPTURE
`

func runCompat(ctx context.Context, e *env, args []string) error {
	return usagef("compat is not implemented yet")
}
