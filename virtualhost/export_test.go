package virtualhost

import (
	"time"

	"github.com/lyremq/lyre/conf"
)

// SetSweepInterval changes how often durable hosts opened afterwards delete expired messages.
func SetSweepInterval(d time.Duration) (restore func()) {
	old := sweepInterval
	sweepInterval = d
	return func() { sweepInterval = old }
}

// Crash stops h the way a kill does: its store stops with what was committed (its queued commits are
// written or not, as a crash leaves them), the router journals nothing more (no exact marks).
func Crash(h *Host) error {
	h.persist.stop()
	return h.persist.st.Close()
}

// DeriveSCRAM makes SCRAM credentials with a given salt (NewSCRAMCredentials draws one), for RFC test
// vectors.
func DeriveSCRAM(password string, salt []byte, iterations int) (*conf.SCRAMCredentials, error) {
	return deriveSCRAM(password, salt, iterations)
}

// WatchPasswordChecks runs f around every bcrypt password check (f calls check to do it).
func WatchPasswordChecks(f func(check func() error)) (restore func()) {
	old := compareHash
	compareHash = func(hash, password []byte) error {
		var err error
		f(func() error { err = old(hash, password); return err })
		return err
	}
	return func() { compareHash = old }
}

// SetClock makes h's credential cache read the time from now.
func SetClock(h *Host, now func() time.Time) { h.clock = now }

// CredentialCacheLen returns the entries h's credential cache holds now, expired ones included.
func CredentialCacheLen(h *Host) int { return h.cur.Load().creds.len() }
