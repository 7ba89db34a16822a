package analyze

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/sbcwatch/sbcwatch/audiocodes/syslog"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/sip"
)

// inputKind is what a file holds, told by its first bytes.
type inputKind int

const (
	kindCapture inputKind = iota
	kindLog
	kindOther // neither: binary junk, or gzip around something else
)

// inputSet is the named files and directories sorted into captures and
// SBC logs.
type inputSet struct {
	captures, logs []string
	// listed marks files found in a directory rather than named: one of
	// them that is neither a capture nor a log is skipped with a warning.
	listed map[string]bool
	// warnings are the files skipped (and why).
	warnings []string
}

// classify splits the named files and directories into captures (pcap,
// pcapng, gzip) and SBC logs (text). A named file that is neither, or is
// not a regular file (a FIFO or device would block the read), is an input
// error. In a directory (not recursive) symbolic links are followed and a
// file that is neither is skipped with a warning; a file met twice (named
// twice, or named and in a directory) is read once, with a warning.
func classify(paths []string) (*inputSet, error) {
	in := &inputSet{listed: map[string]bool{}}
	type seen struct {
		name string
		st   os.FileInfo
	}
	var files []seen
	add := func(name string, st os.FileInfo, listed bool) {
		for _, f := range files {
			if os.SameFile(f.st, st) {
				in.warnings = append(in.warnings, fmt.Sprintf("%s: the same file as %s; read once", name, f.name))
				return
			}
		}
		files = append(files, seen{name, st})
		in.listed[name] = listed
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		switch {
		case st.Mode().IsRegular():
			add(p, st, false)
			continue
		case !st.IsDir():
			return nil, fmt.Errorf("%s: not a regular file (%s); save the capture to a file first", p, modeName(st.Mode()))
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			name := filepath.Join(p, e.Name())
			if e.IsDir() {
				continue // not recursive
			}
			st, err := os.Stat(name) // follows a symbolic link
			switch {
			case err != nil:
				in.warnings = append(in.warnings, fmt.Sprintf("%s: skipped: %v", name, errors.Unwrap(err)))
			case st.IsDir():
			case !st.Mode().IsRegular():
				in.warnings = append(in.warnings, fmt.Sprintf("%s: skipped: not a regular file (%s)", name, modeName(st.Mode())))
			default:
				add(name, st, true)
			}
		}
	}
	for _, f := range files {
		k, err := sniff(f.name)
		if err != nil {
			return nil, err
		}
		switch {
		case k == kindLog:
			in.logs = append(in.logs, f.name)
		case k == kindOther && in.listed[f.name]:
			in.warnings = append(in.warnings, fmt.Sprintf("%s: skipped: not a capture or an SBC log", f.name))
		default:
			in.captures = append(in.captures, f.name)
		}
	}
	return in, nil
}

// modeName names a file type for an error message.
func modeName(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.Type().String()
}

// sniff reads a file's first 512 bytes: capture magic numbers (also
// inside gzip) are captures; text is a log, even with a stray NUL or
// control byte in it; other bytes are kindOther. Files too short to tell
// go to tap, which names the problem.
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
	if b[0] == 0x1f && b[1] == 0x8b {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			return kindCapture, nil // a damaged gzip header: tap says so
		}
		n, _ = io.ReadFull(zr, b[:cap(b)])
		if n < 4 || isCaptureMagic(b[:n]) {
			return kindCapture, nil
		}
		return kindOther, nil
	}
	if isCaptureMagic(b) {
		return kindCapture, nil
	}
	if isText(b) {
		return kindLog, nil
	}
	return kindOther, nil
}

func isCaptureMagic(b []byte) bool {
	for _, m := range [][]byte{{0xa1, 0xb2, 0xc3, 0xd4}, {0xd4, 0xc3, 0xb2, 0xa1}, {0xa1, 0xb2, 0x3c, 0x4d},
		{0x4d, 0x3c, 0xb2, 0xa1}, {0x0a, 0x0d, 0x0d, 0x0a}} {
		if bytes.HasPrefix(b, m) {
			return true
		}
	}
	return false
}

// isText tells text from binary: at most one byte in 20 is a control
// character (other than tab, line ends and ESC) or part of invalid UTF-8.
// A log line with a NUL in it stays text; random bytes (about half of
// them not UTF-8) do not.
func isText(b []byte) bool {
	bad := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c < 0x80 {
			if c < 0x09 || (c > 0x0d && c < 0x20 && c != 0x1b) || c == 0x7f {
				bad++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 && len(b)-i >= utf8.UTFMax {
			bad++ // (a rune cut by the 512-byte window is not held against it)
		}
		i += max(size, 1)
	}
	return bad*20 <= len(b)
}

// logInput is what the SBC logs hold, ready to be merged with captures.
type logInput struct {
	msgs    []*sip.Message // by time
	sockets []*syslog.Socket
	lines   int
	gaps    int
	errs    int
	// long counts the lines skipped for being maxLogLine or longer.
	long     int
	warnings []string
}

// maxLogLine bounds a log line, its line end included (the syslog
// parser's limit): a longer line is skipped and counted, never held in
// memory whole.
const maxLogLine = 1 << 20

// readLogs parses AudioCodes syslog/debug-recording text files. A file
// found in a directory that holds no AudioCodes line is skipped with a
// warning; a named one is an error.
func readLogs(ctx context.Context, in *inputSet, cfg *config.Config, p *sip.Parser) (*logInput, error) {
	loc := time.UTC
	if cfg.LogTimezone != "" {
		l, err := time.LoadLocation(cfg.LogTimezone)
		if err != nil {
			return nil, err
		}
		loc = l
	}
	li := &logInput{}
	for _, path := range in.logs {
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
		lim := &lineLimit{ctx: ctx, br: bufio.NewReaderSize(f, 1<<16), max: maxLogLine}
		res, err := syslog.Parse(lim, opt)
		f.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if res.Lines+lim.long > 0 && len(res.Sockets) == 0 && len(res.Messages) == 0 {
			if in.listed[path] {
				li.warnings = append(li.warnings, fmt.Sprintf("%s: skipped: not a capture, and no AudioCodes log lines in it", path))
				continue
			}
			return nil, fmt.Errorf("%s: not a capture, and no AudioCodes log lines in it", path)
		}
		if lim.long > 0 {
			li.warnings = append(li.warnings, fmt.Sprintf("%s: %d lines longer than 1 MiB skipped", path, lim.long))
		}
		msgs, errs := res.SIP(p)
		li.msgs = append(li.msgs, msgs...)
		li.sockets = append(li.sockets, res.Sockets...)
		li.lines += res.Lines
		li.gaps += res.Gaps
		li.errs += errs
		li.long += lim.long
	}
	sort.SliceStable(li.msgs, func(i, j int) bool { return li.msgs[i].Time.Before(li.msgs[j].Time) })
	return li, nil
}

// lineLimit passes lines through and drops every line longer than max
// bytes (its line end included), counting them in long. It holds at most
// one line of max bytes, and stops when ctx ends (SIGINT, SIGTERM).
type lineLimit struct {
	ctx  context.Context
	br   *bufio.Reader
	max  int
	long int
	out  []byte // the rest of the current line, to hand out
	line []byte
	err  error
}

func (l *lineLimit) Read(p []byte) (int, error) {
	for len(l.out) == 0 {
		if l.err == nil && l.ctx != nil {
			l.err = l.ctx.Err()
		}
		if l.err != nil {
			return 0, l.err
		}
		l.line = l.line[:0]
		over := false
		for {
			chunk, err := l.br.ReadSlice('\n')
			if !over {
				if len(l.line)+len(chunk) > l.max {
					over = true
					l.line = l.line[:0]
				} else {
					l.line = append(l.line, chunk...)
				}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			l.err = err
			break
		}
		if over {
			l.long++
			l.line = l.line[:0]
		}
		l.out = l.line
	}
	n := copy(p, l.out)
	l.out = l.out[n:]
	return n, nil
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

// damage turns the files that ended early into report warnings. When the
// captures gave no packet at all and no log gave a message, there is
// nothing to report on: that is an input error (exit status 2) naming the
// first damaged file.
func damage(dst *[]string, warnings []string, packets uint64, li *logInput) error {
	if len(warnings) > 0 && packets == 0 && (li == nil || li.lines == 0) {
		return fmt.Errorf("%w: %s", ErrInput, warnings[0])
	}
	*dst = append(*dst, warnings...)
	return nil
}

// noteInputs counts in the report's stats what the inputs lost: capture
// files that ended early, log lines skipped for their length.
func noteInputs(extra map[string]uint64, li *logInput, damaged []string) {
	if len(damaged) > 0 {
		extra["damaged_files"] = uint64(len(damaged))
	}
	if li != nil && li.long > 0 {
		extra["log_lines_too_long"] = uint64(li.long)
	}
}
