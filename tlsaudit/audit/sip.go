package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// buildOptions builds an OPTIONS like Microsoft's keep-alive towards the
// SBC: Request-URI and To name the SBC FQDN, Via/From/Contact carry the
// client's FQDN (never an IP), CSeq 1, Max-Forwards 70.
func buildOptions(sbcFQDN string, sbcPort int, clientFQDN string, localPort int, userAgent string) *sip.Request {
	tlsParam := func() sip.HeaderParams {
		p := sip.NewParams()
		p.Add("transport", "tls")
		return p
	}
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: sbcFQDN, Port: sbcPort, UriParams: tlsParam()})

	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TLS", Host: clientFQDN, Port: localPort, Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "sbcwatch", Host: clientFQDN}, Params: sip.NewParams()}
	from.Params.Add("tag", randHex(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: sbcFQDN}, Params: sip.NewParams()})
	callID := sip.CallIDHeader(randHex(16) + "@" + clientFQDN)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "sbcwatch", Host: clientFQDN, Port: localPort, UriParams: tlsParam()}})
	req.AppendHeader(sip.NewHeader("User-Agent", userAgent))
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	req.SetBody(nil) // adds Content-Length: 0
	return req
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// options sends an OPTIONS on conn and waits for the final response to
// it, within the context deadline. The result is always non-nil; a
// timeout or parse error is recorded in it.
func (a *auditor) options(ctx context.Context, conn net.Conn, sbcFQDN string) *SIPResult {
	port, _ := strconv.Atoi(a.port)
	localPort := 0
	if ta, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		localPort = ta.Port
	}
	req := buildOptions(sbcFQDN, port, a.o.ClientFQDN, localPort, a.o.UserAgent)
	res := &SIPResult{CallID: req.CallID().Value()}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	start := time.Now()
	if _, err := io.WriteString(conn, req.String()); err != nil {
		res.Error = "send OPTIONS: " + errWords(err)
		return res
	}
	stream := sip.NewParser().NewSIPStream()
	defer stream.Close()
	buf := make([]byte, 16<<10)
	for {
		n, rerr := conn.Read(buf)
		if n > 0 {
			_, _ = stream.Write(buf[:n])
			for {
				msg, _, perr := stream.ParseNext()
				if errors.Is(perr, io.ErrUnexpectedEOF) || errors.Is(perr, io.EOF) {
					// need more bytes (io.EOF: the buffer is empty)
					break
				}
				if perr != nil {
					res.Error = "parse response: " + perr.Error()
					return res
				}
				resp, ok := msg.(*sip.Response)
				if !ok || resp.CallID() == nil || resp.CallID().Value() != res.CallID {
					continue // a request from the SBC or another transaction
				}
				if resp.StatusCode < 200 {
					continue
				}
				res.Ms = ms(time.Since(start))
				res.Code, res.Reason = resp.StatusCode, resp.Reason
				if h := resp.GetHeader("Server"); h != nil {
					res.Server = h.Value()
				} else if h := resp.GetHeader("User-Agent"); h != nil {
					res.Server = h.Value()
				}
				return res
			}
		}
		if rerr != nil {
			if w := errWords(rerr); w == "timeout" {
				res.Error = fmt.Sprintf("no response within %s", time.Since(start).Round(time.Millisecond))
			} else {
				res.Error = "read response: " + w
			}
			return res
		}
	}
}
