package config

import "io"

var errIOEOF = io.EOF
