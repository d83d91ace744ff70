package virtualhost

import "time"

// SetSweepInterval changes how often durable hosts opened afterwards delete expired messages.
func SetSweepInterval(d time.Duration) (restore func()) {
	old := sweepInterval
	sweepInterval = d
	return func() { sweepInterval = old }
}
