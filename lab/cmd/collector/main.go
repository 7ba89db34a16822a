// Command collector is the lab's debug-recording collector: it receives
// the SBC's ACDR datagrams on UDP 925 (so they are delivered, not answered
// with ICMP), counts them and checks each one's fixed header, until one second after the
// scenario's end.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/sbcwatch/sbcwatch/lab/acdrenc"
	"github.com/sbcwatch/sbcwatch/lab/internal/scenario"
)

func main() {
	var f scenario.Flags
	f.Register(flag.CommandLine)
	addr := flag.String("listen", fmt.Sprintf("%s:%d", scenario.CollectorAddr, scenario.ACDRPort), "UDP address")
	flag.Parse()
	log.SetPrefix("collector: ")
	log.SetFlags(log.Lmicroseconds)
	sc, t0, err := f.Resolve()
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	if err := run(*addr, time.Until(t0.Add(sc.Length+time.Second))); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(addr string, d time.Duration) error {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return fmt.Errorf("address: %w", err)
	}
	c, err := net.ListenUDP("udp4", ua)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 65535)
	n, bad := 0, 0
	for {
		k, _, err := c.ReadFromUDP(buf)
		if err != nil {
			break
		}
		n++
		if k < acdrenc.PayloadOffset || buf[0] != acdrenc.Version || buf[12] != acdrenc.TracePointSys || buf[13] != acdrenc.MediaTypeSIP {
			bad++
		}
	}
	log.Printf("received %d ACDR packets, %d malformed", n, bad)
	if bad > 0 {
		return fmt.Errorf("%d malformed ACDR packets", bad)
	}
	return nil
}
