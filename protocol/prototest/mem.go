package prototest

import "runtime"

// MemInUse returns the live heap and the goroutine stacks in use, after two garbage collections: the
// second empties the sync.Pool victim caches the first one filled. Idle-connection tests take it before
// and after opening many connections; they check their bounds only when RaceEnabled is false.
func MemInUse() (heap, stack int64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.StackInuse)
}
