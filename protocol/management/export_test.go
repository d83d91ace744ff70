package management

import (
	"slices"
	"testing"
	"time"
)

// SetQueueFullWait shortens or lengthens how long a publish waits for a full queue, for one test.
func SetQueueFullWait(t testing.TB, d time.Duration) {
	old := queueFullWait.Swap(int64(d))
	t.Cleanup(func() { queueFullWait.Store(old) })
}

// APIPatterns returns the patterns of the routes m registers under /api/v1/, sorted.
func APIPatterns(m *Manager) []string {
	var out []string
	for p := range m.apiHandlers() {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
