package main

import "syscall"

// brokerProcAttr: nothing to set on Windows, where compare's /proc readings do not work anyway.
func brokerProcAttr() *syscall.SysProcAttr { return nil }
