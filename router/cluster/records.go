package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Session records (see the package doc, "Replicated sessions"): the last record of every persistent MQTT
// session of every virtual host, so that a client whose node died resumes its session on another node.
// The link stores and returns them and does not read them (virtualhost.Directory encodes them).

const (
	recordsStream = "LYRE_SESSIONS"
	recordMark    = "sr" // subjects "lyre.<vhost>.sr.<client id>"
	// recordQueue bounds the record writes awaiting JetStream's acknowledgement; a write finding it full
	// fails at once.
	recordQueue   = 4096
	recordAckWait = 5 * time.Second
)

// ErrRecordsUnavailable fails a session record write while the cluster's JetStream has no quorum (or its
// stream is not made yet), or while too many writes wait.
var ErrRecordsUnavailable = errors.New("cluster: session records unavailable")

// RecordStats counts the session record and durable subscription writes.
type RecordStats struct {
	Written  uint64 // records, deletions and durable subscription changes JetStream stored
	Failed   uint64 // writes refused or not acknowledged in time
	Dropped  uint64 // durable subscription changes not written: too many waited
	Mirrored uint64 // other nodes' durable subscription changes applied here
}

// recorder writes session records and durable subscription changes (durables.go) to their streams, in
// the order they are made.
type recorder struct {
	l     *Link
	ready chan struct{} // closed once both streams exist
	ok    atomic.Bool   // the streams exist
	off   atomic.Bool   // no JetStream after all: sessions stay on their node
	js    jetstream.JetStream
	st    jetstream.Stream
	mu    sync.Mutex // orders publishes with their place in acks
	acks  chan pendingRecord
	// early holds the writes made before the streams existed, in order (put). Guarded by mu.
	early []durableOp
	ctx   context.Context

	written, failed atomic.Uint64
	dropped         atomic.Uint64 // durable subscription changes not written: the queue was full
	mirrored        atomic.Uint64 // other nodes' durable subscription changes applied
}

type pendingRecord struct {
	f    jetstream.PubAckFuture
	done func(error)
}

// startRecorder starts the session records' goroutines when the link may have JetStream.
func (l *Link) startRecorder() {
	if l.js == nil {
		return
	}
	rc := &recorder{l: l, acks: make(chan pendingRecord, recordQueue), ctx: l.quitContext(), ready: make(chan struct{})}
	l.rec = rc
	l.wg.Add(2)
	go rc.setup()
	go rc.ackLoop()
}

// setup creates (or updates) the stream once JetStream answers, retrying while the meta group forms.
func (rc *recorder) setup() {
	defer rc.l.wg.Done()
	_, replicas, err := rc.l.JetStream(rc.ctx)
	if err != nil {
		if errors.Is(err, ErrNoJetStream) {
			rc.l.log.Info("no JetStream: MQTT sessions stay on their node")
			rc.off.Store(true)
		}
		return
	}
	js, err := jetstream.New(rc.l.nc, jetstream.WithPublishAsyncTimeout(recordAckWait))
	if err != nil {
		rc.l.log.Error("session records stream; sessions stay on their node", zap.Error(err))
		return
	}
	cfg := jetstream.StreamConfig{
		Name:              recordsStream,
		Description:       "Lyre MQTT session records: the last record of each client id",
		Subjects:          []string{subjectRoot + ".*." + recordMark + ".>"},
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		MaxMsgSize:        maxPayload,
	}
	st, ok := makeStream(rc.ctx, js, cfg)
	if !ok {
		return
	}
	dcfg := cfg
	dcfg.Name, dcfg.Description = durablesStream, "Lyre durable subscriptions: the last change of each"
	dcfg.Subjects = []string{subjectRoot + ".*." + registryMark + ".>"}
	if _, ok := makeStream(rc.ctx, js, dcfg); !ok {
		return
	}
	rc.mu.Lock()
	rc.js, rc.st = js, st
	rc.ok.Store(true)
	for _, op := range rc.early {
		rc.putLocked(op.subject, op.data, nil)
	}
	rc.early = nil
	rc.mu.Unlock()
	close(rc.ready)
	rc.l.log.Info("MQTT sessions and durable subscriptions replicated", zap.String("stream", recordsStream), zap.Int("replicas", replicas))
}

// ackLoop waits for the acknowledgements in publish order and reports each outcome.
func (rc *recorder) ackLoop() {
	defer rc.l.wg.Done()
	for {
		select {
		case <-rc.ctx.Done():
			for {
				select {
				case p := <-rc.acks:
					rc.finish(p.done, ErrRecordsUnavailable)
				default:
					return
				}
			}
		case p := <-rc.acks:
			var err error
			select {
			case <-p.f.Ok():
			case err = <-p.f.Err():
			case <-rc.ctx.Done():
				err = ErrRecordsUnavailable
			}
			rc.finish(p.done, err)
		}
	}
}

func (rc *recorder) finish(done func(error), err error) {
	if err != nil {
		rc.failed.Add(1)
	} else {
		rc.written.Add(1)
	}
	if done != nil {
		done(err)
	}
}

// RecordsReplicated reports whether session records may be replicated: the link has JetStream, or may
// have (an external NATS says so once asked), and its stream may not be ready yet (RecordsReady).
func (l *Link) RecordsReplicated() bool { return l.rec != nil && !l.rec.off.Load() }

// RecordsReady reports whether the session records' stream exists.
func (l *Link) RecordsReady() bool { return l.rec != nil && l.rec.ok.Load() }

// PutSessionRecord stores rec as client id's session record of vhost, replacing the one before; an empty
// rec records that the session ended. done (which may be nil) learns the outcome: nil once JetStream
// stored it on a quorum of the stream's replicas. Writes are stored in the order they are made. It never
// blocks: a write while too many wait fails at once; one made before the stream exists is written once
// it does (put).
func (l *Link) PutSessionRecord(vhost, clientID string, rec []byte, done func(error)) {
	rc := l.rec
	if rc == nil || rc.off.Load() {
		if done != nil {
			done(ErrRecordsUnavailable)
		}
		return
	}
	if len(rec) > maxPayload {
		rc.finish(done, errTooLarge)
		return
	}
	rc.put(idSubject(recordMark, vhost, clientID), rec, done)
}

// put publishes data on subject (a stream the recorder made), in order; done learns the outcome. Before
// the streams exist (a node starting before the quorum is up) the write waits, up to recordQueue of
// them, and is written, in order, once they do; done is told nil at once then, so that a client is not
// held back for as long as the cluster has no quorum.
func (rc *recorder) put(subject string, data []byte, done func(error)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !rc.ok.Load() {
		if len(rc.early) == recordQueue {
			rc.finish(done, ErrRecordsUnavailable)
			return
		}
		rc.early = append(rc.early, durableOp{subject, data})
		if done != nil {
			done(nil)
		}
		return
	}
	rc.putLocked(subject, data, done)
}

// putLocked is put once the streams exist; rc.mu is held.
func (rc *recorder) putLocked(subject string, data []byte, done func(error)) {
	if len(rc.acks) == cap(rc.acks) {
		rc.finish(done, ErrRecordsUnavailable)
		return
	}
	f, err := rc.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data})
	if err != nil {
		rc.finish(done, errors.Join(ErrRecordsUnavailable, err))
		return
	}
	select {
	case rc.acks <- pendingRecord{f, done}:
	case <-rc.ctx.Done():
		rc.finish(done, ErrRecordsUnavailable)
	}
}

// SessionRecord returns client id's last session record of vhost: found is false when none was ever
// written (or the cluster has no JetStream); an empty rec says the session ended. It fails at once while
// the stream is not made (no quorum yet), and asks the stream leader until it answers or ctx is done.
func (l *Link) SessionRecord(ctx context.Context, vhost, clientID string) (rec []byte, found bool, err error) {
	rc := l.rec
	switch {
	case rc == nil || rc.off.Load():
		return nil, false, nil
	case !rc.ok.Load():
		return nil, false, ErrRecordsUnavailable
	}
	subject := idSubject(recordMark, vhost, clientID)
	for {
		// Attempts of a second: while the stream elects a leader (its last one died with its node, the
		// very case a record is read for) a request goes unanswered, and the next may reach the new one.
		actx, cancel := context.WithTimeout(ctx, time.Second)
		m, err := rc.st.GetLastMsgForSubject(actx, subject)
		cancel()
		switch {
		case err == nil:
			return m.Data, true, nil
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil, false, nil
		}
		select {
		case <-ctx.Done():
			return nil, false, err
		case <-rc.ctx.Done():
			return nil, false, ErrRecordsUnavailable
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RecordStats returns the counters of session record writes.
func (l *Link) RecordStats() RecordStats {
	if l.rec == nil {
		return RecordStats{}
	}
	return RecordStats{Written: l.rec.written.Load(), Failed: l.rec.failed.Load(), Dropped: l.rec.dropped.Load(),
		Mirrored: l.rec.mirrored.Load()}
}
