package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// spoolInputs copies the inputs that can be read only once — "-"
// (standard input), a FIFO, /dev/stdin, a <(process substitution) — to
// temporary files, since the analysis opens each input more than once
// (to tell a capture from a log, then to read it). Regular files and
// directories pass as they are. The copy ends when ctx does: a FIFO
// that no writer opens, or a quiet standard input, never holds up
// SIGINT. cleanup removes the copies; call it even on error.
func spoolInputs(ctx context.Context, paths []string, stdin io.Reader) (out []string, cleanup func(), err error) {
	var tmp []string
	cleanup = func() {
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
		f, err := os.CreateTemp("", "sbcwatch-input-*")
		if err != nil {
			return nil, cleanup, fmt.Errorf("spool %s: %w", p, err)
		}
		tmp = append(tmp, f.Name())
		err = copyInput(ctx, f, p, stdin)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return nil, cleanup, err
		}
		out = append(out, f.Name())
	}
	return out, cleanup, nil
}

// copyInput copies the input named p ("-": stdin) into dst until EOF or
// until ctx ends. The reading goroutine may be blocked in open(2) on a
// FIFO without a writer or in read(2) on a terminal; on ctx's end the
// file is closed (which wakes a pollable FIFO) and the goroutine is left
// to the process's exit, which follows.
func copyInput(ctx context.Context, dst *os.File, p string, stdin io.Reader) error {
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	opened := make(chan *os.File, 1)
	go func() {
		src := stdin
		name := "standard input"
		if p != "-" {
			f, err := os.Open(p)
			if err != nil {
				done <- result{err: err}
				return
			}
			opened <- f
			defer f.Close()
			src, name = f, p
		}
		n, err := io.Copy(dst, src)
		if err != nil {
			err = fmt.Errorf("read %s: %w", name, err)
		}
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		if r.err == nil && r.n == 0 {
			if p == "-" {
				return errors.New("standard input is empty (usage: ... | sbcwatch analyze -)")
			}
			return fmt.Errorf("%s gave no data", p)
		}
		return r.err
	case <-ctx.Done():
		select {
		case f := <-opened:
			_ = f.Close()
		default:
		}
		return ctx.Err()
	}
}
