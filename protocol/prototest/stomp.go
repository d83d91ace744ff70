package prototest

import (
	"errors"
	"testing"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// NopStompLogger drops everything go-stomp's client logs. By default the client writes to the standard
// logger, a line for instance for every subscription it closes at disconnect; tests pass
// stomp.ConnOpt.Logger(prototest.NopStompLogger{}) to keep their output to what the broker logs.
type NopStompLogger struct{}

func (NopStompLogger) Debugf(string, ...any)   {}
func (NopStompLogger) Infof(string, ...any)    {}
func (NopStompLogger) Warningf(string, ...any) {}
func (NopStompLogger) Errorf(string, ...any)   {}
func (NopStompLogger) Debug(string)            {}
func (NopStompLogger) Info(string)             {}
func (NopStompLogger) Warning(string)          {}
func (NopStompLogger) Error(string)            {}

var _ stomp.Logger = NopStompLogger{}

// Unsubscribe sends UNSUBSCRIBE and waits for its RECEIPT. go-stomp v3.1.5 can miss the receipt's
// wake-up (its subscription goroutine closes the subscription and broadcasts before Unsubscribe waits on
// the condition): then Unsubscribe times out on a subscription the RECEIPT did close, its channel closed
// with no error message in it. That outcome counts as the receipt; an ERROR would have left a message.
// A test using it lets goleak ignore go-stomp's waitWithTimeout.func1, the timer the miss leaves.
func Unsubscribe(t testing.TB, s *stomp.Subscription, opts ...func(*frame.Frame) error) {
	t.Helper()
	err := s.Unsubscribe(opts...)
	if err == nil {
		return
	}
	if errors.Is(err, &stomp.ErrUnsubscribeReceiptTimeout) && !s.Active() {
		if m, open := <-s.C; !open || m == nil {
			return
		}
	}
	t.Fatalf("unsubscribe: %v", err)
}
