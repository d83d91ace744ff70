package virtualhost_test

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/virtualhost"
)

// checkWatch counts the password checks running at once.
type checkWatch struct {
	cur, max atomic.Int32
}

func (w *checkWatch) watch(check func() error) {
	n := w.cur.Add(1)
	for m := w.max.Load(); n > m && !w.max.CompareAndSwap(m, n); m = w.max.Load() {
	}
	time.Sleep(20 * time.Millisecond) // long enough for the others to pile up
	_ = check()
	w.cur.Add(-1)
}

// logins runs n logins at once, each from one of addrs in turn, and waits for them.
func logins(h *virtualhost.Host, n int, addrs ...net.Addr) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, _, _ = h.Login(addrs[i%len(addrs)], "alice", []byte("wonderland"), true, "c") })
	}
	wg.Wait()
}

// TestLoginChecksBounded: a host checks at most max_concurrent_logins passwords at once (default: one
// per CPU), however many clients try.
func TestLoginChecksBounded(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: "testdata/users.hcl"})
	var w checkWatch
	defer virtualhost.WatchPasswordChecks(w.watch)()
	addrs := make([]net.Addr, 8)
	for i := range addrs {
		addrs[i] = &net.TCPAddr{IP: net.IPv4(192, 0, 2, byte(i+1)), Port: 1000}
	}
	logins(h, 24, addrs...)
	if m, cpus := w.max.Load(), runtime.GOMAXPROCS(0); int(m) > cpus {
		t.Fatalf("%d password checks at once on a host, want at most %d (one per CPU)", m, cpus)
	}
}

// TestLoginChecksBoundedPerAddress: max_concurrent_logins_per_address bounds the logins one address has
// under way; one that cannot take its turn within Throttle.Wait is refused with ErrLoginBusy.
func TestLoginChecksBoundedPerAddress(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: "testdata/users.hcl", MaxConcurrentLogins: 100, MaxConcurrentLoginsPerAddress: 2})
	var w checkWatch
	defer virtualhost.WatchPasswordChecks(w.watch)()
	one := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000}
	logins(h, 12, one)
	if m := w.max.Load(); m != 2 {
		t.Fatalf("%d password checks at once from one address, want 2", m)
	}
	h.Throttle = &virtualhost.Throttle{Wait: 5 * time.Millisecond}
	var busy atomic.Int32
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, _, err := h.Login(one, "alice", []byte("wonderland"), true, "c"); errors.Is(err, virtualhost.ErrLoginBusy) {
				busy.Add(1)
			}
		})
	}
	wg.Wait()
	if busy.Load() == 0 {
		t.Fatal("6 logins at once from one address, 2 allowed, 5ms to wait for a 20ms check: none refused busy")
	}
}

// TestLoginDelayHeldByAddress: the next login from an address waits until the delay its last failure
// earned is over, whether or not the failed client waited for its answer; it is refused with
// ErrLoginBusy when that is beyond Throttle.Wait. Other addresses are not held back.
func TestLoginDelayHeldByAddress(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: "testdata/users.hcl"})
	const delay = 200 * time.Millisecond
	h.Throttle = &virtualhost.Throttle{Free: 1, Base: delay, Max: delay, Wait: delay / 4}
	addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 1}
	for i, want := range []time.Duration{0, delay} {
		if _, d, err := h.Login(addr, "alice", []byte("nope"), true, "c"); !errors.Is(err, virtualhost.ErrBadCredentials) || d != want {
			t.Fatalf("failure %d: delay %v, %v", i, d, err)
		}
	}
	if _, _, err := h.Login(addr, "alice", []byte("wonderland"), true, "c"); !errors.Is(err, virtualhost.ErrLoginBusy) {
		t.Fatalf("within the delay, waiting less than it: %v, want ErrLoginBusy", err)
	}
	if _, _, err := h.Login(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 8)}, "alice", []byte("wonderland"), true, "c"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	h.Throttle.Wait = 2 * delay
	start := time.Now()
	if _, _, err := h.Login(addr, "alice", []byte("wonderland"), true, "c"); err != nil {
		t.Fatalf("waiting out the delay: %v", err)
	}
	if el := time.Since(start); el < delay/2 {
		t.Fatalf("answered after %v, within the address's delay", el)
	}
}
