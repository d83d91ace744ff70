//go:build linux || darwin

package main

import "syscall"

// openFileLimit returns the process's open-file limit now: the soft limit, which the Go runtime raised to
// the hard limit at startup.
func openFileLimit() (uint64, bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, false
	}
	return r.Cur, r.Cur != ^uint64(0) // RLIM_INFINITY
}
