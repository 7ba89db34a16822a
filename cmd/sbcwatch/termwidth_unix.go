//go:build unix

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// terminalWidth is the width of the terminal f is, else $COLUMNS when
// f is a terminal, else 0 (unlimited: a pipe gets the whole lines).
func terminalWidth(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	if ws.Col > 0 {
		return int(ws.Col)
	}
	return columnsEnv()
}
