//go:build !linux && !darwin

package main

// openFileLimit: no RLIMIT_NOFILE here, so nothing to warn about.
func openFileLimit() (uint64, bool) { return 0, false }
