//go:build !unix

package main

import "os"

// terminalWidth is $COLUMNS when f is a terminal, else 0.
func terminalWidth(f *os.File) int {
	if !isTerminal(f) {
		return 0
	}
	return columnsEnv()
}
