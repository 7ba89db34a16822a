package analyze

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/sbcwatch/sbcwatch/audiocodes/syslog"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/sip"
)

// inputKind is what a file holds, told by its first bytes.
type inputKind int

const (
	kindCapture inputKind = iota
	kindLog
)

// classify splits the named files and directories into captures (pcap,
// pcapng, gzip) and SBC logs (text). Anything else is an input error.
func classify(paths []string) (captures, logs []string, err error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	for _, f := range files {
		k, err := sniff(f)
		if err != nil {
			return nil, nil, err
		}
		if k == kindLog {
			logs = append(logs, f)
		} else {
			captures = append(captures, f)
		}
	}
	return captures, logs, nil
}

// sniff reads a file's first bytes: capture magic numbers (and gzip,
// which tap opens) are captures; printable text is a log. An empty or
// binary file that is neither goes to tap, which names the problem.
func sniff(path string) (inputKind, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b := make([]byte, 512)
	n, _ := io.ReadFull(f, b)
	b = b[:n]
	if n < 4 {
		return kindCapture, nil
	}
	switch {
	case bytes.HasPrefix(b, []byte{0xa1, 0xb2, 0xc3, 0xd4}), bytes.HasPrefix(b, []byte{0xd4, 0xc3, 0xb2, 0xa1}),
		bytes.HasPrefix(b, []byte{0xa1, 0xb2, 0x3c, 0x4d}), bytes.HasPrefix(b, []byte{0x4d, 0x3c, 0xb2, 0xa1}),
		bytes.HasPrefix(b, []byte{0x0a, 0x0d, 0x0d, 0x0a}), bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return kindCapture, nil
	}
	for _, c := range b {
		if c < 0x09 || (c > 0x0d && c < 0x20 && c != 0x1b) {
			return kindCapture, nil // binary: let tap say what is wrong
		}
	}
	return kindLog, nil
}

// logInput is what the SBC logs hold, ready to be merged with captures.
type logInput struct {
	msgs    []*sip.Message // by time
	sockets []*syslog.Socket
	lines   int
	gaps    int
	errs    int
}

// readLogs parses AudioCodes syslog/debug-recording text files.
func readLogs(paths []string, cfg *config.Config, p *sip.Parser) (*logInput, error) {
	loc := time.UTC
	if cfg.LogTimezone != "" {
		l, err := time.LoadLocation(cfg.LogTimezone)
		if err != nil {
			return nil, err
		}
		loc = l
	}
	in := &logInput{}
	for _, path := range paths {
		year := cfg.LogYear
		if year == 0 {
			st, err := os.Stat(path)
			if err != nil {
				return nil, err
			}
			year = st.ModTime().In(loc).Year()
		}
		opt := syslog.Options{Year: year, Location: loc}
		if addrs := sbcAddrs(cfg); len(addrs) > 0 {
			opt.Local = addrs[0]
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		var r io.Reader = bufio.NewReaderSize(f, 1<<16)
		res, err := syslog.Parse(r, opt)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if res.Lines > 0 && len(res.Sockets) == 0 && len(res.Messages) == 0 {
			return nil, fmt.Errorf("%s: not a capture, and no AudioCodes log lines in it", path)
		}
		msgs, errs := res.SIP(p)
		in.msgs = append(in.msgs, msgs...)
		in.sockets = append(in.sockets, res.Sockets...)
		in.lines += res.Lines
		in.gaps += res.Gaps
		in.errs += errs
	}
	sort.SliceStable(in.msgs, func(i, j int) bool { return in.msgs[i].Time.Before(in.msgs[j].Time) })
	return in, nil
}

// sbcAddrs returns the configured SBC addresses.
func sbcAddrs(cfg *config.Config) []netip.Addr {
	var out []netip.Addr
	for _, s := range cfg.SBCs {
		for _, a := range s.Addresses {
			if p, err := netip.ParseAddr(a); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}
