package main

import "errors"

var (
	errStopped = errors.New("lyre-bench: stopped")
	errUsage   = errors.New("lyre-bench: bad usage")
)

var (
	errMalformed      = errors.New("lyre-bench: malformed packet")
	errPacketTooLarge = errors.New("lyre-bench: packet too large")
	errUnexpected     = errors.New("lyre-bench: unexpected packet")
	errRefused        = errors.New("lyre-bench: connection refused")
	errSubRefused     = errors.New("lyre-bench: subscription refused")
	errStalled        = errors.New("lyre-bench: acknowledgements stalled")
)

var errBrokerError = errors.New("lyre-bench: broker sent ERROR")
