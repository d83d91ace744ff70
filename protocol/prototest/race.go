//go:build race

package prototest

// RaceEnabled reports whether the race detector is on. It inflates memory figures, so memory bounds are
// checked only without it.
const RaceEnabled = true
