//go:build race

package protocol_test

// raceEnabled: the race detector inflates memory figures, so memory bounds are checked without it.
const raceEnabled = true
