package main

import "syscall"

// brokerProcAttr puts a broker compare starts in a process group of its own (Ctrl-C on the terminal is
// for lyre-bench, which stops the broker itself) and has the kernel kill it should lyre-bench die first.
func brokerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
