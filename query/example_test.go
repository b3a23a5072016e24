package query_test

import (
	"fmt"

	"github.com/pcapflow/pcapflow/query"
)

// A filter in tcpdump's spelling and its normal form; an error says
// where.
func ExampleParse() {
	for _, f := range []string{
		"tcp port 80 or 443",
		"src 10.0.0.1 and not net 10.77",
		"host 10.0.0.1 and port",
	} {
		e, err := query.Parse(f)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(e)
	}
	// Output:
	// (tcp and port 80) or (tcp and port 443)
	// src host 10.0.0.1 and not net 10.77.0.0/16
	// filter error at column 23: expected a port number or service name after 'port', found the end of the filter
}
