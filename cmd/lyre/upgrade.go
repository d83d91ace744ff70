package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
)

// Upgrading a format-1 store (Lyre until December 2026). Format 1 kept names as text keys
// ("queue:a/b"), filters as wire text and a queue of its own per MQTT session; format 2 is
// protocol-neutral and keeps a session's messages in its durable subscriptions. A format-1 directory is
// refused at open; its export stream (`lyre store export` of the build that wrote it) is converted by
// `lyre store import` of this one:
//   - names parse from their text keys; a durable subscription's filter with STOMP's default grammar and
//     a session's filters with MQTT's (the grammars format 1 fell back to without a connector);
//   - each topic subscription of a session becomes its durable subscription ($mqtt/<client>/<filter>),
//     owned by the session's owner;
//   - a session's queued messages go to the first of its durable subscriptions whose filter matches the
//     message's topic, after the messages in flight, in their order; one that none matches (its
//     subscription was removed) is dropped and counted;
//   - an in-flight message goes there too, first, under its packet id.

// v1Record is one line of a format-1 export stream.
type v1Record struct {
	Queue      *store.Queue `json:"queue"`
	DurableSub *struct {
		ID, Filter, Selector string
	} `json:"dsub"`
	Session *struct {
		ClientID        string
		ProtocolVersion uint8
		ExpiryInterval  uint32
		DisconnectedAt  int64
		Subscriptions   []struct {
			Filter     string
			QoS        uint8
			Options    uint8
			Identifier uint32
		}
		Owner string
	} `json:"session"`
	Entry *struct {
		List         store.List
		Owner        string
		Seq          uint64
		Redeliveries uint32
		Msg          *store.Message
	} `json:"entry"`
	Inflight *struct {
		ClientID string
		PacketID uint16
		State    store.InflightState
		QoS      uint8
		Msg      *store.Message
	} `json:"inflight"`
	Inbound *struct {
		ClientID string
		PacketID uint16
	} `json:"inbound"`
	Retained *store.Retained `json:"retained"`
}

// v1Session is what the conversion remembers of a session to place its messages.
type v1Session struct {
	owner   string
	durable []v1Durable // in subscription order
}

type v1Durable struct {
	dest   router.Destination
	filter router.Filter
}

// v1SessionOffset moves a session's queued messages above its in-flight ones (numbered from 1 in packet
// id order), so they are delivered after them, as format 1 did.
const v1SessionOffset = 1 << 16

// v1Upgrade converts format-1 records.
type v1Upgrade struct {
	mqtt, stomp *router.Grammar
	sessions    map[string]*v1Session
	inflight    map[string]uint64 // client id -> in-flight messages placed so far
	dropped     int               // session messages no durable subscription matched
}

func newV1Upgrade() (*v1Upgrade, error) {
	mg, err := router.NewGrammar(router.MQTTGrammarConfig())
	if err != nil {
		return nil, err
	}
	sg, err := router.NewGrammar(router.STOMPGrammarConfig())
	if err != nil {
		return nil, err
	}
	return &v1Upgrade{mqtt: mg, stomp: sg, sessions: make(map[string]*v1Session), inflight: make(map[string]uint64)}, nil
}

// importV1 reads the records of a format-1 stream (its header read already) into s, committing as it
// goes, and returns how many it read and how many session messages it dropped.
func importV1(dec *json.Decoder, s store.Store) (n, dropped int, err error) {
	u, err := newV1Upgrade()
	if err != nil {
		return 0, 0, err
	}
	var ops []store.Op
	for {
		var rec v1Record
		err := dec.Decode(&rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, u.dropped, fmt.Errorf("record %d: %w", n+1, err)
		}
		n++
		more, err := u.convert(rec)
		if err != nil {
			return n, u.dropped, fmt.Errorf("record %d: %w", n, err)
		}
		ops = append(ops, more...)
		if len(ops) >= 512 {
			if err := store.Apply(s, ops...); err != nil {
				return n, u.dropped, err
			}
			ops = ops[:0]
		}
	}
	if len(ops) > 0 {
		if err := store.Apply(s, ops...); err != nil {
			return n, u.dropped, err
		}
	}
	return n, u.dropped, nil
}

// convert turns one format-1 record into this format's ops.
func (u *v1Upgrade) convert(rec v1Record) ([]store.Op, error) {
	switch {
	case rec.Queue != nil:
		d, err := parseV1Key(rec.Queue.Name)
		q := *rec.Queue
		q.Name = router.Key(d)
		return []store.Op{store.PutQueue{Queue: q}}, err
	case rec.DurableSub != nil:
		return u.durable(rec.DurableSub.ID, rec.DurableSub.Filter, rec.DurableSub.Selector)
	case rec.Session != nil:
		return u.session(rec)
	case rec.Entry != nil:
		return u.entry(rec)
	case rec.Inflight != nil:
		return u.inflightOps(rec)
	case rec.Inbound != nil:
		return []store.Op{store.PutInbound{ClientID: rec.Inbound.ClientID, PacketID: rec.Inbound.PacketID}}, nil
	case rec.Retained != nil:
		d, err := parseV1Key(rec.Retained.Topic)
		r := *rec.Retained
		r.Topic = router.Key(d)
		return []store.Op{store.PutRetained{Retained: r}}, err
	}
	return nil, errors.New("empty record")
}

func (u *v1Upgrade) durable(id, filter, selector string) ([]store.Op, error) {
	d, err := parseV1Key(id)
	if err != nil {
		return nil, err
	}
	f, err := u.stomp.ParseFilter(filter)
	if err != nil {
		return nil, fmt.Errorf("durable subscription %q: filter %q: %w", id, filter, err)
	}
	return []store.Op{store.PutDurableSub{Sub: store.DurableSub{ID: router.Key(d), Filter: router.FilterKey(f),
		Selector: selector, QoS: 2}}}, nil
}

func (u *v1Upgrade) session(rec v1Record) ([]store.Op, error) {
	in := rec.Session
	out := store.Session{ClientID: in.ClientID, ProtocolVersion: in.ProtocolVersion, ExpiryInterval: in.ExpiryInterval,
		DisconnectedAt: in.DisconnectedAt, Owner: in.Owner}
	vs := &v1Session{owner: in.Owner}
	var ops []store.Op
	for _, sub := range in.Subscriptions {
		text, share := sub.Filter, ""
		if rest, ok := strings.CutPrefix(text, "$share/"); ok {
			share, text, _ = strings.Cut(rest, "/")
		}
		f, err := u.mqtt.ParseFilter(text)
		if err != nil {
			return nil, fmt.Errorf("session %q: filter %q: %w", in.ClientID, sub.Filter, err)
		}
		durable := f.Kind == router.Topic && share == ""
		out.Subscriptions = append(out.Subscriptions, store.Subscription{Name: sub.Filter, Filter: router.FilterKey(f),
			Share: share, QoS: sub.QoS, Options: sub.Options, Identifier: sub.Identifier, Durable: durable})
		if durable {
			d := router.Destination{Kind: router.DurableSub, Path: []string{"$mqtt", in.ClientID, sub.Filter}}
			vs.durable = append(vs.durable, v1Durable{d, f})
			ops = append(ops, store.PutDurableSub{Sub: store.DurableSub{ID: router.Key(d), Filter: router.FilterKey(f),
				Owner: in.Owner, QoS: sub.QoS, Flags: 1}}) // 1: drop QoS 0 while offline (virtualhost)
		}
	}
	u.sessions[in.ClientID] = vs
	return append([]store.Op{store.PutSession{Session: out}}, ops...), nil
}

// place finds the durable subscription of client's session that matches m.
func (u *v1Upgrade) place(client string, m *store.Message) (router.Destination, bool) {
	if vs := u.sessions[client]; vs != nil && m != nil {
		d := router.Destination{Kind: router.Kind(m.DestKind), Path: m.DestPath}
		for _, ds := range vs.durable {
			if ds.filter.Matches(d) {
				return ds.dest, true
			}
		}
	}
	return router.Destination{}, false
}

func (u *v1Upgrade) entry(rec v1Record) ([]store.Op, error) {
	e := rec.Entry
	out := store.Entry{List: e.List, Seq: e.Seq, Redeliveries: e.Redeliveries, Msg: e.Msg}
	switch e.List {
	case store.ListQueue, store.ListDurableSub:
		d, err := parseV1Key(e.Owner)
		if err != nil {
			return nil, err
		}
		out.Owner = router.Key(d)
	default: // format 1's session queue
		d, ok := u.place(e.Owner, e.Msg)
		if !ok {
			u.dropped++
			return nil, nil
		}
		out.List, out.Owner, out.Seq = store.ListDurableSub, router.Key(d), e.Seq+v1SessionOffset
	}
	return []store.Op{store.PutEntry{Entry: out}}, nil
}

func (u *v1Upgrade) inflightOps(rec v1Record) ([]store.Op, error) {
	f := rec.Inflight
	out := store.Inflight{ClientID: f.ClientID, PacketID: f.PacketID, State: f.State, QoS: f.QoS}
	d, ok := u.place(f.ClientID, f.Msg)
	if !ok {
		if f.State == store.InflightPublish {
			u.dropped++
			return nil, nil
		}
		// A release (PUBREC came): only its packet id matters, its message is gone.
		if vs := u.sessions[f.ClientID]; vs != nil && len(vs.durable) > 0 {
			d = vs.durable[0].dest
		} else {
			return nil, nil
		}
	}
	out.Ref = store.Ref{List: store.ListDurableSub, Owner: router.Key(d)}
	var ops []store.Op
	if f.Msg != nil {
		u.inflight[f.ClientID]++
		out.Ref.Seq = u.inflight[f.ClientID]
		ops = append(ops, store.PutEntry{Entry: store.Entry{List: store.ListDurableSub, Owner: out.Ref.Owner, Seq: out.Ref.Seq,
			Redeliveries: 1, Msg: f.Msg}})
	}
	return append(ops, store.PutInflight{Inflight: out}), nil
}

// parseV1Key parses a format-1 text key: the kind's name, ':', then the path segments joined by '/', each
// with '%' and '/' escaped as %25 and %2F.
func parseV1Key(key string) (router.Destination, error) {
	kindText, rest, ok := strings.Cut(key, ":")
	if !ok {
		return router.Destination{}, fmt.Errorf("%w: format-1 name %q", store.ErrCorrupt, key)
	}
	d := router.Destination{}
	ok = false
	for k := router.Topic; k <= router.TempTopic; k++ {
		if k.String() == kindText {
			d.Kind, ok = k, true
			break
		}
	}
	if !ok {
		return d, fmt.Errorf("%w: format-1 name %q: unknown kind", store.ErrCorrupt, key)
	}
	for _, s := range strings.Split(rest, "/") {
		if strings.Contains(s, "%") {
			s = strings.ReplaceAll(strings.ReplaceAll(s, "%2F", "/"), "%25", "%")
		}
		d.Path = append(d.Path, s)
	}
	return d, nil
}
