package virtualhost

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
)

// Replicated session records. With a cluster that has JetStream a front-end's persistent sessions are
// kept cluster-wide as well as in the host's store, so a session outlives the node that held it: a client
// whose node died reconnects to another node, which finds the record (SessionRecords.LoadRecord) and
// makes the session again; the messages its durable subscriptions held are in the cluster's queue stream
// already (router/cluster's doc, "Replicated sessions"). A record names the node that wrote it, so a node
// that comes back after the session moved on knows its own copy is stale.
//
// A record write that fails (no quorum, or too slow) is logged and counted by the transport and does not
// fail the client: the session goes on on its node as without a cluster, and a later write replaces the
// record.

// SessionRecords keeps session records cluster-wide. Directory implements it when its transport is a
// RecordTransport.
type SessionRecords interface {
	// Replicates reports whether records are kept cluster-wide at all (their store may not be ready yet).
	Replicates() bool
	// SaveRecord stores rec as its client id's record on host, by this node; tr, when set, learns when
	// the write is done (successful or not: see the package doc).
	SaveRecord(host string, rec SessionRecord, tr router.Tracker)
	// DeleteRecord records that client id's session on host ended.
	DeleteRecord(host, clientID string, tr router.Tracker)
	// LoadRecord returns client id's record on host, waiting for the answer until ctx is done; it fails at
	// once while the records' store is not ready.
	LoadRecord(ctx context.Context, host, clientID string) (RecordLookup, error)
}

// RecordLookup is what LoadRecord found.
type RecordLookup struct {
	Found   bool   // a record was ever written
	Ended   bool   // the last record says the session ended
	Node    string // the node that wrote it
	Session RecoveredSession
}

// RecordTransport stores records cluster-wide (router/cluster's Link with JetStream): the last rec of each
// (vhost, client id), an empty rec for an ended session.
type RecordTransport interface {
	RecordsReplicated() bool
	PutSessionRecord(vhost, clientID string, rec []byte, done func(error))
	SessionRecord(ctx context.Context, vhost, clientID string) (rec []byte, found bool, err error)
}

// replicaRecord is a record on the wire: the store's form of the session, and who wrote it.
type replicaRecord struct {
	Node    string
	Session store.SessionState
}

// Replicates implements SessionRecords.
func (d *Directory) Replicates() bool {
	rt, ok := d.t.(RecordTransport)
	return ok && rt.RecordsReplicated()
}

// SaveRecord implements SessionRecords.
func (d *Directory) SaveRecord(host string, rec SessionRecord, tr router.Tracker) {
	b, err := json.Marshal(replicaRecord{Node: d.node, Session: *sessionState(&RecoveredSession{SessionRecord: rec})})
	if err != nil {
		d.log.Error("session record not encoded", zap.String("vhost", host), zap.String("client_id", rec.ClientID), zap.Error(err))
		return
	}
	d.put(host, rec.ClientID, b, tr)
}

// DeleteRecord implements SessionRecords.
func (d *Directory) DeleteRecord(host, clientID string, tr router.Tracker) {
	d.put(host, clientID, nil, tr)
}

func (d *Directory) put(host, clientID string, b []byte, tr router.Tracker) {
	rt, ok := d.t.(RecordTransport)
	if !ok || !rt.RecordsReplicated() {
		return
	}
	var done func(error)
	if tr != nil {
		done = tr.Track()
	}
	rt.PutSessionRecord(host, clientID, b, func(err error) {
		if err != nil {
			// At most one warning every 10 s: a cluster without quorum fails every write.
			now := time.Now().UnixNano()
			if last := d.recordWarned.Load(); now-last > int64(10*time.Second) && d.recordWarned.CompareAndSwap(last, now) {
				d.log.Warn("session record not replicated; the session stays on this node until a later write succeeds",
					zap.String("vhost", host), zap.String("client_id", clientID), zap.Error(err))
			}
		}
		if done != nil {
			done(nil) // the client is not failed for it: see the package doc
		}
	})
}

// LoadRecord implements SessionRecords.
func (d *Directory) LoadRecord(ctx context.Context, host, clientID string) (RecordLookup, error) {
	rt, ok := d.t.(RecordTransport)
	if !ok || !rt.RecordsReplicated() {
		return RecordLookup{}, nil
	}
	b, found, err := rt.SessionRecord(ctx, host, clientID)
	if err != nil || !found {
		return RecordLookup{}, err
	}
	if len(b) == 0 {
		return RecordLookup{Found: true, Ended: true}, nil
	}
	var w replicaRecord
	if err := json.Unmarshal(b, &w); err != nil {
		return RecordLookup{}, fmt.Errorf("%w: session record of %q: %w", store.ErrCorrupt, clientID, err)
	}
	rs, err := recoveredSession(w.Session)
	if err != nil {
		return RecordLookup{}, err
	}
	if rs.ClientID != clientID {
		return RecordLookup{}, fmt.Errorf("%w: session record of %q names %q", store.ErrCorrupt, clientID, rs.ClientID)
	}
	return RecordLookup{Found: true, Node: w.Node, Session: rs}, nil
}

var _ SessionRecords = (*Directory)(nil)
