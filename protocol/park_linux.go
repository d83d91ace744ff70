package protocol

import (
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Readiness notification for parked connections (see the package doc, "Idle connections"): each Server
// has one epoll instance, made when a connection first parks. A parked socket is in it level-triggered
// and one-shot, so a wake disarms it and parking again (EPOLL_CTL_MOD) reports input that arrived in
// between. The epoll descriptor is itself in Go's network poller, so no thread blocks in epoll_wait: one
// goroutine waits like any socket read, and starts a goroutine per connection that has input.

// watchState is a connection's registration: its socket's raw descriptor access and its slot in the
// poller's table (epoll carries the slot and its generation, not a pointer).
type watchState struct {
	raw  syscall.RawConn // nil: this connection cannot park
	slot uint32          // index+1 in poller.conns; 0: not registered yet
	gen  uint32
}

// poller owns a Server's epoll instance and the table of connections registered in it.
type poller struct {
	epfd  int
	f     *os.File // epfd, waited on through Go's network poller
	done  chan struct{}
	wheel *deadlineWheel // wakes parked connections at their read deadlines

	mu    sync.Mutex
	conns []*Conn
	gens  []uint32
	free  []uint32 // unused indexes of conns
}

// watchable sets up c to park when its socket allows it: TCP without TLS, or a WebSocket over it. The
// bytes TLS buffers inside crypto/tls cannot be seen, so input there could wait unseen behind a parked
// reader; such connections keep their goroutine.
func (c *Conn) watchable() {
	nc := c.nc
	if ws, ok := nc.(*wsConn); ok {
		if ws.tls != nil {
			return
		}
		nc = ws.nc
	}
	if c.tlsc != nil {
		return
	}
	if sc, ok := nc.(syscall.Conn); ok && c.inbuf() != nil {
		if raw, err := sc.SyscallConn(); err == nil {
			c.watch.raw = raw
		}
	}
}

// canPark reports whether the connection may park between packets.
func (c *Conn) canPark() bool { return c.watch.raw != nil }

// park registers the connection for input and marks it parked; true means the caller's goroutine must
// return at once without touching the connection, false that it cannot park and Step should block.
func (c *Conn) park() bool {
	p := c.srv.poller()
	if p == nil {
		c.watch.raw = nil
		return false
	}
	op := unix.EPOLL_CTL_MOD
	if c.watch.slot == 0 {
		c.watch.slot, c.watch.gen = p.add(c)
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(c.watch.slot), Pad: int32(c.watch.gen)}
	c.inbuf().idle()
	raw, deadline := c.watch.raw, c.rdl
	c.parkedAt = time.Since(clockStart)
	c.state.Store(readerParked)
	// From here another goroutine may own the connection: only the locals are used. Control holds the
	// descriptor open, so a concurrent Close cannot hand its number to another socket meanwhile.
	var cerr error
	err := raw.Control(func(fd uintptr) { cerr = unix.EpollCtl(p.epfd, op, int(fd), &ev) })
	if err == nil {
		err = cerr
	}
	if err != nil {
		if !c.state.CompareAndSwap(readerParked, readerRunning) {
			return true // closed meanwhile, and the wake that won runs the session
		}
		if op == unix.EPOLL_CTL_ADD {
			c.watch.raw = nil // never mind parking this one
		}
		return false
	}
	if deadline != 0 {
		// After the state changed, so a deadline already passed still wakes it.
		p.wheel.insert(c, deadline)
	}
	return true
}

// unwatch forgets a connection that ended (its socket is closed, which took it out of epoll).
func (c *Conn) unwatch() {
	if c.watch.slot != 0 {
		c.srv.poll.p.remove(c.watch.slot)
		c.watch.slot = 0
		c.srv.poll.p.wheel.remove(c)
	}
}

// pollerOnce is the Server's lazily made poller.
type pollerOnce struct {
	once sync.Once
	p    *poller
}

// poller returns the Server's poller, made on first use; nil when epoll is not available (logged once).
func (s *Server) poller() *poller {
	s.poll.once.Do(func() {
		p, err := newPoller()
		if err != nil {
			s.log.Warn("idle connections keep their goroutine: no readiness notification", zap.Error(err))
			return
		}
		s.poll.p = p
	})
	return s.poll.p
}

// closePoller stops the poller once every connection has ended (Shutdown).
func (s *Server) closePoller() {
	s.poll.once.Do(func() {}) // no poller after this
	if p := s.poll.p; p != nil {
		_ = p.f.Close()
		<-p.done
		p.wheel.close()
	}
}

func newPoller() (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	p := &poller{epfd: fd, f: os.NewFile(uintptr(fd), "lyre-epoll"), done: make(chan struct{}),
		wheel: newDeadlineWheel((*Conn).deadlineWake)}
	rc, err := p.f.SyscallConn()
	if err != nil {
		_ = p.f.Close()
		return nil, err
	}
	go p.loop(rc)
	go p.wheel.run()
	return p, nil
}

// loop waits for ready connections until the epoll descriptor is closed and wakes each.
func (p *poller) loop(rc syscall.RawConn) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 64)
	_ = rc.Read(func(fd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(fd), events, 0)
			if err == unix.EINTR {
				continue
			}
			if n <= 0 {
				return false // nothing more: wait in Go's poller for the next
			}
			for i := range events[:n] {
				if c := p.lookup(events[i].Fd, events[i].Pad); c != nil {
					c.wake(true)
				}
			}
			// Let the goroutines just started run before starting more: a burst of input on many idle
			// connections at once (a sweep of keep-alive pings) would otherwise give each its stack at
			// the same time.
			runtime.Gosched()
		}
	})
}

func (p *poller) add(c *Conn) (slot, gen uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var i uint32
	if k := len(p.free); k > 0 {
		i = p.free[k-1]
		p.free = p.free[:k-1]
		p.conns[i] = c
	} else {
		i = uint32(len(p.conns))
		p.conns = append(p.conns, c)
		p.gens = append(p.gens, 0)
	}
	p.gens[i]++
	return i + 1, p.gens[i]
}

func (p *poller) remove(slot uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[slot-1] = nil
	p.gens[slot-1]++
	p.free = append(p.free, slot-1)
}

func (p *poller) lookup(slot, gen int32) *Conn {
	i := uint32(slot) - 1
	p.mu.Lock()
	defer p.mu.Unlock()
	if int(i) >= len(p.conns) || p.gens[i] != uint32(gen) {
		return nil // an event for a connection that ended
	}
	return p.conns[i]
}
