package main

import "errors"

var (
	errStopped = errors.New("lyre-bench: stopped")
	errUsage   = errors.New("lyre-bench: bad usage")
)
