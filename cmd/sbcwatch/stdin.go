package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sbcwatch/sbcwatch/tap"
)

// spoolInputs prepares the inputs that can be read only once — "-"
// (standard input), a FIFO, /dev/stdin, a <(process substitution). One
// that starts like a capture (pcap, pcapng, gzip magic) becomes a
// tap.Stream, read as it arrives, so `tcpdump -U -w - | sbcwatch analyze
// --format ndjson -` reports as the packets come and stores nothing on
// disk. Anything else (an SBC log, which the analysis reads whole, or
// bytes it will name as not a capture) is copied to a temporary file.
// Regular files and directories pass as they are. Waiting for input ends
// when ctx does: a FIFO that no writer opens, or a quiet standard input,
// never holds up SIGINT. renames pairs each copy's path with the input's
// name (for strings.NewReplacer). cleanup removes the copies and stops
// the streams; call it even on error.
func spoolInputs(ctx context.Context, paths []string, stdin io.Reader) (out []string, streams []tap.Stream, renames []string, cleanup func(), err error) {
	var tmp []string
	var stops []func()
	cleanup = func() {
		for _, stop := range stops {
			stop()
		}
		for _, p := range tmp {
			_ = os.Remove(p)
		}
	}
	for _, p := range paths {
		if p != "-" {
			st, err := os.Stat(p)
			if err != nil || st.Mode().IsRegular() || st.IsDir() {
				out = append(out, p) // the analysis names a missing file
				continue
			}
		}
		in, err := openInput(ctx, p, stdin)
		if err != nil {
			return nil, nil, nil, cleanup, err
		}
		stops = append(stops, in.stop)
		if isCaptureMagic(in.head) {
			streams = append(streams, tap.Stream{Name: in.name, R: in.reader(ctx)})
			continue
		}
		f, err := os.CreateTemp("", "sbcwatch-input-*")
		if err != nil {
			return nil, nil, nil, cleanup, fmt.Errorf("spool %s: %w", p, err)
		}
		tmp = append(tmp, f.Name())
		err = in.copyTo(ctx, f)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return nil, nil, nil, cleanup, err
		}
		out = append(out, f.Name())
		renames = append(renames, f.Name(), in.name)
	}
	return out, streams, renames, cleanup, nil
}

// renamingWriter rewrites each write with r (one message a write).
type renamingWriter struct {
	w io.Writer
	r *strings.Replacer
}

func (w *renamingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.w, w.r.Replace(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// isCaptureMagic reports whether b starts like a pcap, pcapng or gzip
// file (what tap reads).
func isCaptureMagic(b []byte) bool {
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		return true
	}
	if len(b) < 4 {
		return false
	}
	switch string(b[:4]) {
	case "\x0a\x0d\x0d\x0a", "\xa1\xb2\xc3\xd4", "\xd4\xc3\xb2\xa1", "\xa1\xb2\x3c\x4d", "\x4d\x3c\xb2\xa1":
		return true
	}
	return false
}

// onceInput is an input that can be read only once, its first bytes
// already read into head.
type onceInput struct {
	name string
	head []byte
	src  io.Reader
	file *os.File       // nil for standard input
	pipe *io.PipeReader // the stream handed on, once reader made it
}

// stop closes the input (which wakes a read blocked on a pollable FIFO)
// and the stream handed on (which ends the goroutine feeding it).
func (in *onceInput) stop() {
	if in.pipe != nil {
		_ = in.pipe.Close()
	}
	if in.file != nil {
		_ = in.file.Close()
	}
}

// openInput opens p ("-": stdin) and reads its first bytes (at least 4,
// unless it ends first), or gives up when ctx ends. The reading goroutine
// may be blocked in open(2) on a FIFO without a writer or in read(2) on
// a terminal; on ctx's end the file is closed (which wakes a pollable
// FIFO) and the goroutine is left to the process's exit, which follows.
func openInput(ctx context.Context, p string, stdin io.Reader) (*onceInput, error) {
	type result struct {
		in  *onceInput
		err error
	}
	done := make(chan result, 1)
	opened := make(chan *os.File, 1)
	go func() {
		in := &onceInput{name: "standard input", src: stdin}
		if p != "-" {
			f, err := os.Open(p)
			if err != nil {
				done <- result{err: err}
				return
			}
			opened <- f
			in.name, in.src, in.file = p, f, f
		}
		buf := make([]byte, 512)
		n, err := io.ReadAtLeast(in.src, buf, 4)
		in.head = buf[:n]
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = nil
		}
		if err != nil {
			in.stop()
			done <- result{err: fmt.Errorf("read %s: %w", in.name, err)}
			return
		}
		if n == 0 {
			in.stop()
			if p == "-" {
				err = errors.New("standard input is empty (usage: ... | sbcwatch analyze -)")
			} else {
				err = fmt.Errorf("%s gave no data", p)
			}
		}
		done <- result{in, err}
	}()
	select {
	case r := <-done:
		return r.in, r.err
	case <-ctx.Done():
		select {
		case f := <-opened:
			_ = f.Close()
		default:
		}
		return nil, ctx.Err()
	}
}

// reader is the whole input (head and rest) as a stream that ends with
// ctx's error when ctx ends, even while a read of the input blocks.
func (in *onceInput) reader(ctx context.Context) io.Reader {
	pr, pw := io.Pipe()
	in.pipe = pr
	go func() {
		_, err := io.Copy(pw, io.MultiReader(bytes.NewReader(in.head), in.src))
		pw.CloseWithError(err) // nil: io.EOF for the reader
	}()
	stop := context.AfterFunc(ctx, func() {
		pr.CloseWithError(ctx.Err())
		in.stop()
	})
	return &stopReader{r: pr, stop: stop}
}

// stopReader releases its context hook once the stream has ended.
type stopReader struct {
	r    io.Reader
	stop func() bool
}

func (s *stopReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil {
		s.stop()
	}
	return n, err
}

// copyTo copies the whole input into dst until its end or until ctx
// ends.
func (in *onceInput) copyTo(ctx context.Context, dst *os.File) error {
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(dst, io.MultiReader(bytes.NewReader(in.head), in.src))
		if err != nil {
			err = fmt.Errorf("read %s: %w", in.name, err)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		in.stop()
		return ctx.Err()
	}
}
