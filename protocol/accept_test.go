package protocol

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lyremq/lyre/conf"
)

// flakyListener fails Accept a few times (as with EMFILE), then blocks until closed.
type flakyListener struct {
	mu       sync.Mutex
	failures int
	calls    []time.Time
	closed   chan struct{}
	once     sync.Once
}

var errTooManyFiles = errors.New("accept: too many open files")

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	fail := len(l.calls) <= l.failures
	l.mu.Unlock()
	if fail {
		return nil, errTooManyFiles
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *flakyListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *flakyListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func (l *flakyListener) times() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.calls...)
}

// Accept errors back off 5ms, 10ms, 20ms... as in net/http, and each is logged.
func TestAcceptBackoff(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := NewServer(zap.New(core), map[string]Handler{MQTT: HandlerFunc(func(*Conn) {})})
	fl := &flakyListener{failures: 4, closed: make(chan struct{})}
	s.mu.Lock()
	s.serveLocked(fl, conf.Connector{Name: "flaky", Protocol: MQTT}, testSettings(t, conf.Connector{Name: "flaky", Protocol: MQTT}), nil)
	s.mu.Unlock()
	waitFor(t, 2*time.Second, func() bool { return len(fl.times()) == 5 })
	calls := fl.times()
	for i, want := range []time.Duration{5, 10, 20, 40} {
		if gap := calls[i+1].Sub(calls[i]); gap < want*time.Millisecond {
			t.Fatalf("retry %d after %s; want at least %dms", i+1, gap, want)
		}
	}
	if n := logs.FilterMessage("accept failed").Len(); n != 4 {
		t.Fatalf("%d accept failures logged; want 4", n)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Shutdown interrupts a backoff sleep.
func TestAcceptBackoffStopsOnShutdown(t *testing.T) {
	s := NewServer(nil, map[string]Handler{MQTT: HandlerFunc(func(*Conn) {})})
	fl := &flakyListener{failures: 1 << 30, closed: make(chan struct{})}
	s.mu.Lock()
	s.serveLocked(fl, conf.Connector{Name: "flaky", Protocol: MQTT}, testSettings(t, conf.Connector{Name: "flaky", Protocol: MQTT}), nil)
	s.mu.Unlock()
	waitFor(t, 2*time.Second, func() bool { return len(fl.times()) >= 7 }) // the next backoff is 640ms
	start := time.Now()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("Shutdown waited %s for the accept backoff", el)
	}
}
