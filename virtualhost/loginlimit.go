package virtualhost

import (
	"errors"
	"net"
	"runtime"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
)

// ErrLoginBusy refuses a login that waited Throttle.Wait for its turn in vain: the host was checking
// max_concurrent_logins passwords, or its address had max_concurrent_logins_per_address attempts under
// way or paying their delay.
var ErrLoginBusy = errors.New("virtualhost: too many logins in progress")

// DefaultLoginWait is Throttle.Wait when it is 0.
const DefaultLoginWait = 5 * time.Second

// compareHash checks a password against its bcrypt hash: the expensive part of a login. A variable so
// that tests can watch how many checks run at once.
var compareHash = bcrypt.CompareHashAndPassword

// loginTurn is a login's places under the host's bounds (Throttle.turn), given back by done.
type loginTurn struct {
	t     *Throttle
	ip    string
	check bool // holds a place among the host's password checks
}

// loginTurn waits for a login from remote to take its turn: check says whether it will check a
// password (a user name on a host with a users file), the work max_concurrent_logins bounds.
func (h *Host) loginTurn(remote net.Addr, check bool) (loginTurn, error) {
	c := h.cur.Load().conf
	hostMax := c.MaxConcurrentLogins
	if hostMax <= 0 {
		hostMax = runtime.GOMAXPROCS(0)
	}
	addrMax := c.MaxConcurrentLoginsPerAddress
	if addrMax <= 0 {
		addrMax = conf.DefaultMaxConcurrentLoginsPerAddress
	}
	return h.Throttle.turn(remote, check, hostMax, addrMax)
}

// turn takes a login's places: it waits until its address has paid the delay its last failure earned,
// then for a place among its address's attempts (at most addrMax) and, when check is set, among the
// host's password checks (at most hostMax). It gives up with ErrLoginBusy after Wait. A nil Throttle
// bounds nothing.
func (t *Throttle) turn(remote net.Addr, check bool, hostMax, addrMax int) (loginTurn, error) {
	if t == nil {
		return loginTurn{}, nil
	}
	lt := loginTurn{t: t, ip: addrKey(remote), check: check}
	deadline := time.Now().Add(or(t.Wait, DefaultLoginWait))
	if lt.ip != "" {
		t.mu.Lock()
		var until time.Time
		if f := t.fails[lt.ip]; f != nil {
			until = f.until
		}
		t.mu.Unlock()
		if d := time.Until(until); d > 0 {
			if until.After(deadline) {
				return loginTurn{}, ErrLoginBusy
			}
			time.Sleep(d)
		}
	}
	if !t.enter(lt, hostMax, addrMax, deadline) {
		return loginTurn{}, ErrLoginBusy
	}
	return lt, nil
}

// enter takes lt's places, waiting for them until deadline.
func (t *Throttle) enter(lt loginTurn, hostMax, addrMax int, deadline time.Time) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		t.gmu.Lock()
		if (!lt.check || t.checking < hostMax) && (lt.ip == "" || t.attempts[lt.ip] < addrMax) {
			if lt.check {
				t.checking++
			}
			if lt.ip != "" {
				if t.attempts == nil {
					t.attempts = make(map[string]int)
				}
				t.attempts[lt.ip]++
			}
			t.gmu.Unlock()
			return true
		}
		if t.freed == nil {
			t.freed = make(chan struct{})
		}
		freed := t.freed
		t.gmu.Unlock()
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
		}
		select {
		case <-freed:
		case <-timer.C:
			return false
		}
	}
}

// done gives back lt's places: the host's at once, the address's once delay (what a failure earned) is
// over, whether or not the client waits for it, so closing the connection does not make room sooner.
func (lt loginTurn) done(delay time.Duration) {
	if lt.t == nil {
		return
	}
	if lt.check {
		lt.t.leave(true, "")
	}
	if lt.ip == "" {
		return
	}
	if delay > 0 {
		time.AfterFunc(delay, func() { lt.t.leave(false, lt.ip) })
		return
	}
	lt.t.leave(false, lt.ip)
}

// leave gives back a place among the host's checks (check) or the attempts of address ip, and wakes
// the logins waiting for one.
func (t *Throttle) leave(check bool, ip string) {
	t.gmu.Lock()
	if check {
		t.checking--
	}
	if ip != "" {
		if t.attempts[ip]--; t.attempts[ip] <= 0 {
			delete(t.attempts, ip)
		}
	}
	if t.freed != nil {
		close(t.freed)
		t.freed = nil
	}
	t.gmu.Unlock()
}

// addrKey is the IP address of remote, the key of its failures and attempts; "" for nil. Every login
// asks it, so a TCP address (all of them but in tests) skips the host:port string it would otherwise
// build and split.
func addrKey(remote net.Addr) string {
	switch a := remote.(type) {
	case nil:
		return ""
	case *net.TCPAddr:
		if a == nil || len(a.IP) == 0 {
			return "" // as the split of ":port" gives
		}
		if a.Zone != "" {
			return a.IP.String() + "%" + a.Zone
		}
		return a.IP.String()
	}
	ip := remote.String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	return ip
}

// loginWait is how long a login waits for its turn (Throttle.Wait, DefaultLoginWait without one).
func (h *Host) loginWait() time.Duration {
	if h.Throttle != nil && h.Throttle.Wait > 0 {
		return h.Throttle.Wait
	}
	return DefaultLoginWait
}
