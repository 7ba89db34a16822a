// Command labcerts keeps the lab PKI (see lab/internal/labtls) in a
// directory: the lab CA, the SBC's public, expired, expiring and default
// certificates and the Microsoft proxy certificate, each with its key. An
// existing CA is kept; certificates that are missing or no longer fit
// their purpose are (re)issued.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/sbcwatch/sbcwatch/lab/internal/labtls"
	"github.com/sbcwatch/sbcwatch/lab/internal/scenario"
)

func main() {
	dir := flag.String("dir", "", "output directory")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "labcerts: -dir is required")
		os.Exit(2)
	}
	ms := []string{scenario.MSProxyFQDN, "sip2.pstnhub.microsoft.com", "sip3.pstnhub.microsoft.com", "*.pstnhub.microsoft.com"}
	issued, err := labtls.Ensure(*dir, scenario.SBCFQDN, ms, time.Now().UTC())
	if err != nil {
		fmt.Fprintln(os.Stderr, "labcerts:", err)
		os.Exit(1)
	}
	if len(issued) > 0 {
		fmt.Fprintf(os.Stderr, "labcerts: issued %v in %s\n", issued, *dir)
	}
}
