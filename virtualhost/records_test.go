package virtualhost

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// recordTransport is a fakeTransport that keeps records, as the cluster's stream does: the last one per
// (vhost, client id); writeErr fails writes.
type recordTransport struct {
	fakeTransport
	recs     map[string][]byte
	writeErr error
}

func (r *recordTransport) RecordsReplicated() bool { return true }

func (r *recordTransport) PutSessionRecord(vhost, clientID string, rec []byte, done func(error)) {
	if r.writeErr == nil {
		r.recs[vhost+"/"+clientID] = rec
	}
	if done != nil {
		done(r.writeErr)
	}
}

func (r *recordTransport) SessionRecord(_ context.Context, vhost, clientID string) ([]byte, bool, error) {
	b, ok := r.recs[vhost+"/"+clientID]
	return b, ok, nil
}

// A record comes back whole with the node that wrote it; a deletion reads as ended; a write that fails
// does not fail its tracker (the session goes on on its node), and a directory over a transport without
// records keeps none.
func TestDirectoryRecords(t *testing.T) {
	rt := &recordTransport{fakeTransport: fakeTransport{held: map[string]int{}}, recs: map[string][]byte{}}
	d := NewDirectory(rt, "n1", nil)
	if !d.Replicates() {
		t.Fatal("a record transport: Replicates false")
	}
	ctx := context.Background()
	if got, err := d.LoadRecord(ctx, "h", "dev1"); err != nil || got.Found {
		t.Fatalf("before any write: %+v, %v", got, err)
	}
	rec := handedSession().SessionRecord
	tr := &Tracker{}
	d.SaveRecord("h", rec, tr)
	if err := tr.Wait(); err != nil {
		t.Fatal(err)
	}
	got, err := NewDirectory(rt, "n2", nil).LoadRecord(ctx, "h", "dev1")
	if err != nil || !got.Found || got.Ended || got.Node != "n1" {
		t.Fatalf("read on another node: %+v, %v", got, err)
	}
	if !reflect.DeepEqual(got.Session.SessionRecord, rec) {
		t.Fatalf("record\n got %+v\nwant %+v", got.Session.SessionRecord, rec)
	}
	if got, _ := d.LoadRecord(ctx, "other", "dev1"); got.Found {
		t.Fatal("another host's record of the same client id")
	}
	d.DeleteRecord("h", "dev1", nil)
	if got, err := d.LoadRecord(ctx, "h", "dev1"); err != nil || !got.Found || !got.Ended {
		t.Fatalf("after the delete: %+v, %v", got, err)
	}

	rt.writeErr = errors.New("no quorum")
	tr = &Tracker{}
	d.SaveRecord("h", rec, tr)
	if err := tr.Wait(); err != nil {
		t.Fatalf("a failed record write failed the client: %v", err)
	}

	rt.recs["h/bad"] = []byte("{not json")
	if _, err := d.LoadRecord(ctx, "h", "bad"); err == nil {
		t.Fatal("a corrupt record read without error")
	}
	rt.recs["h/swap"] = rt.recs["h/dev1"]
	rt.writeErr = nil
	d.SaveRecord("h", rec, nil)
	rt.recs["h/swap"] = rt.recs["h/dev1"]
	if _, err := d.LoadRecord(ctx, "h", "swap"); err == nil {
		t.Fatal("a record naming another client id read without error")
	}

	plain := NewDirectory(&fakeTransport{held: map[string]int{}}, "n1", nil)
	if plain.Replicates() {
		t.Fatal("a transport without records: Replicates true")
	}
	plain.SaveRecord("h", rec, nil)
	if got, err := plain.LoadRecord(ctx, "h", "dev1"); err != nil || got.Found {
		t.Fatalf("a transport without records: %+v, %v", got, err)
	}
}
