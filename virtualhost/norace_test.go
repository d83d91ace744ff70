//go:build !race

package virtualhost_test

// raceEnabled is set when the race detector is on; long tests skip themselves under it.
const raceEnabled = false
