package main

import "context"

const streamsUsage = `usage: pcapflow streams [-i INDEX] [CAPTURE...] (-w FILE | -O DIR) [--tcpheader] [--gaps skip|zero|stop] [FILTER...]
`

func runStreams(ctx context.Context, e *env, args []string) error {
	return usagef("streams is not implemented yet")
}
