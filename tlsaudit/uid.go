package tlsaudit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// UID is a connection's unique id, as Zeek's uid: ID ("client->server")
// repeats when a port is reused, UID does not. It is derived from the
// addresses and the first packet's time, so the same capture gives the
// same UIDs in every run and process.
func (c *Conn) UID() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d", c.Client, c.Server, c.FirstSeen.UnixNano())
	return "C" + hex.EncodeToString(h.Sum(nil)[:9])
}
