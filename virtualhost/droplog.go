package virtualhost

import (
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/router"
)

// dropLogEvery spaces the lines about one destination's drops: a queue that overflows at 100k msg/s
// must not write 100k log lines a second.
const dropLogEvery = 10 * time.Second

// maxDropLogDests bounds the destinations counted separately between two reports; drops at more are
// summed into one "other destinations" count.
const maxDropLogDests = 1000

// nameGrammar renders destinations in log lines the way STOMP names them (/queue/orders.eu, /dsub/d).
var nameGrammar = func() *router.Grammar {
	g, err := router.NewGrammar(router.STOMPGrammarConfig())
	if err != nil {
		panic("virtualhost: STOMP grammar: " + err.Error())
	}
	return g
}()

// dropLog logs the messages that full queues and durable subscriptions drop (router.Options.Dropped):
// the first drop at a destination at once, then every dropLogEvery one line per destination that dropped
// more, with the count since the last line. Destinations that stayed quiet for a period are forgotten.
type dropLog struct {
	log *zap.Logger
	mu  sync.Mutex
	// counts since the last line, per destination key; a key present with 0 was reported this period.
	counts map[string]int
	others int
	timer  *time.Timer
	closed bool
}

// dropped implements router.Options.Dropped.
func (l *dropLog) dropped(d router.Destination, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	key := router.Key(d)
	switch c, seen := l.counts[key]; {
	case seen:
		l.counts[key] = c + n
	case len(l.counts) >= maxDropLogDests:
		l.others += n
	default:
		if l.counts == nil {
			l.counts = make(map[string]int)
		}
		l.counts[key] = 0
		l.log.Warn("destination full: messages dropped under its full policy",
			zap.String("destination", nameGrammar.Render(d)), zap.Int("dropped", n))
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(dropLogEvery, l.report)
	}
}

// report writes the counts of the period that ended and starts the next one if anything dropped.
func (l *dropLog) report() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	l.flushLocked()
	if len(l.counts) > 0 && !l.closed {
		l.timer = time.AfterFunc(dropLogEvery, l.report)
	}
}

// flushLocked logs and resets the counts; destinations without new drops are forgotten, so their next
// drop is reported at once again.
func (l *dropLog) flushLocked() {
	for key, c := range l.counts {
		if c == 0 {
			delete(l.counts, key)
			continue
		}
		l.counts[key] = 0
		d, _ := router.ParseKey(key)
		l.log.Warn("destination full: messages dropped under its full policy",
			zap.String("destination", nameGrammar.Render(d)), zap.Int("dropped", c),
			zap.Duration("in", dropLogEvery))
	}
	if l.others > 0 {
		l.log.Warn("destinations full: messages dropped under their full policies",
			zap.String("destination", "(other destinations)"), zap.Int("dropped", l.others),
			zap.Duration("in", dropLogEvery))
		l.others = 0
	}
}

// close reports what is still counted and stops reporting.
func (l *dropLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.flushLocked()
}
