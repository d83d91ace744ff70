//go:build unix && !linux

package main

import "syscall"

// brokerProcAttr puts a broker compare starts in a process group of its own: Ctrl-C on the terminal is for
// lyre-bench, which stops the broker itself.
func brokerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
