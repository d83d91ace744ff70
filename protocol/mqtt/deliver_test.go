package mqtt

import (
	"bufio"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"bytes"
	"testing"
	"time"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
)

// discardSender is an outbound queue that keeps only the last encoded bytes.
type discardSender struct {
	buf  []byte
	full bool
	n    int
	held []protocol.Brake // what asked this connection, as a publisher, to hold back
	// out and dropped are what the session counted (protocol.Conn.CountOut, CountDropped).
	out, dropped int
}

func (d *discardSender) HoldFor(b protocol.Brake) { d.held = append(d.held, b) }

func (d *discardSender) Begin() ([]byte, bool) {
	if d.full {
		return nil, false
	}
	return d.buf[:0], true
}

func (d *discardSender) Commit(b []byte) { d.buf, d.n = b, d.n+1 }

func (d *discardSender) CountOut(n int) { d.out += n }

func (d *discardSender) CountDropped(n int) { d.dropped += n }

func (d *discardSender) CommitDeferred(b []byte) { d.Commit(b) }

// benchSession returns an online session with one subscription to filter at qos, writing to out.
func benchSession(tb testing.TB, filter string, qos uint8, out sender) (*session, *router.Subscription, *router.Grammar) {
	tb.Helper()
	g, err := router.NewGrammar(router.MQTTGrammarConfig())
	if err != nil {
		tb.Fatal(err)
	}
	f, err := g.ParseFilter(filter)
	if err != nil {
		tb.Fatal(err)
	}
	s := newSession("bench", true, nil, zap.NewNop())
	s.out, s.g, s.version, s.maxInflight, s.maxQueued = out, g, packet.Version311, 32, 1000
	e := &subEntry{key: filter, qos: qos}
	e.rs = &router.Subscription{Filter: f, Sink: s, QoS: qos, ID: filter, Opaque: e}
	s.setEntryLocked(e, true)
	return s, e.rs, g
}

func benchMessage(tb testing.TB, g *router.Grammar, topic string, qos uint8) *router.Message {
	tb.Helper()
	d, err := g.ParseName(topic)
	if err != nil {
		tb.Fatal(err)
	}
	return &router.Message{ID: 1, Dest: d, Body: make([]byte, 64), QoS: qos, Origin: topic, OriginGram: g}
}

// TestDeliverQoS0ZeroAllocs pins the hot path: a QoS 0 delivery into a session allocates nothing, with
// the publisher's grammar or another one.
func TestDeliverQoS0ZeroAllocs(t *testing.T) {
	out := &discardSender{}
	s, sub, g := benchSession(t, "sensors/+/temp", 0, out)
	same := benchMessage(t, g, "sensors/k1/temp", 0)
	other := *same
	other.OriginGram = nil // rendered from the destination into the session's scratch buffer
	for name, m := range map[string]*router.Message{"same grammar": same, "other grammar": &other} {
		d := router.Delivery{Msg: m, Sub: sub}
		s.Deliver(d) // warm up buffers
		if n := testing.AllocsPerRun(1000, func() { s.Deliver(d) }); n != 0 {
			t.Errorf("%s: %v allocs per Deliver, want 0", name, n)
		}
		rd := packet.NewReader(bytesReader(out.buf), 0)
		rd.SetVersion(packet.Version311)
		p, err := rd.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if pp := p.(*packet.PublishPacket); pp.Topic != "sensors/k1/temp" || pp.QoS != 0 || len(pp.Payload) != 64 {
			t.Fatalf("%s: encoded %+v", name, pp)
		}
	}
}

// TestDeliverQoS0DroppedWhenOutboundFull: QoS 0 over the outbound limit is dropped and counted; QoS 1 is
// kept and sent once there is room.
func TestDeliverQoS0DroppedWhenOutboundFull(t *testing.T) {
	out := &discardSender{full: true}
	s, sub, g := benchSession(t, "t", 1, out)
	if s.Deliver(router.Delivery{Msg: benchMessage(t, g, "t", 0), Sub: sub}) {
		t.Fatal("QoS 0 accepted with a full outbound queue")
	}
	if s.dropped != 1 || out.dropped != 1 {
		t.Fatalf("dropped %d, counted on the connection %d; want 1", s.dropped, out.dropped)
	}
	if !s.Deliver(router.Delivery{Msg: benchMessage(t, g, "t", 1), Sub: sub}) {
		t.Fatal("QoS 1 refused")
	}
	if s.queue.len() != 1 || out.n != 0 {
		t.Fatalf("queued %d, sent %d", s.queue.len(), out.n)
	}
	out.full = false
	s.mu.Lock()
	s.pumpLocked()
	s.mu.Unlock()
	if s.queue.len() != 0 || out.n != 1 || out.out != 1 || len(s.inflight) != 1 {
		t.Fatalf("after drain: queued %d, sent %d (counted %d), inflight %d", s.queue.len(), out.n, out.out, len(s.inflight))
	}
}

func BenchmarkDeliver(b *testing.B) {
	b.Run("qos0", func(b *testing.B) {
		s, sub, g := benchSession(b, "sensors/+/temp", 0, &discardSender{})
		d := router.Delivery{Msg: benchMessage(b, g, "sensors/k1/temp", 0), Sub: sub}
		b.ReportAllocs()
		for b.Loop() {
			s.Deliver(d)
		}
	})
	b.Run("qos0_rendered", func(b *testing.B) {
		s, sub, g := benchSession(b, "sensors/+/temp", 0, &discardSender{})
		m := benchMessage(b, g, "sensors/k1/temp", 0)
		m.OriginGram = nil
		d := router.Delivery{Msg: m, Sub: sub}
		b.ReportAllocs()
		for b.Loop() {
			s.Deliver(d)
		}
	})
	b.Run("qos1_acked", func(b *testing.B) {
		s, sub, g := benchSession(b, "sensors/+/temp", 1, &discardSender{})
		d := router.Delivery{Msg: benchMessage(b, g, "sensors/k1/temp", 1), Sub: sub}
		b.ReportAllocs()
		for b.Loop() {
			s.Deliver(d)
			s.complete(s.lastID, waitPuback)
		}
	})
	// MQTT 5 subscribers: a message without properties, and one with the usual request/response ones and
	// an outbound topic alias.
	b.Run("qos0_v5", func(b *testing.B) {
		s, sub, g := benchSession(b, "sensors/+/temp", 0, &discardSender{})
		s.version, s.v5 = packet.Version5, &sessV5{}
		d := router.Delivery{Msg: benchMessage(b, g, "sensors/k1/temp", 0), Sub: sub}
		b.ReportAllocs()
		for b.Loop() {
			s.Deliver(d)
		}
	})
	b.Run("qos0_v5_props", func(b *testing.B) {
		s, sub, g := benchSession(b, "sensors/+/temp", 0, &discardSender{})
		s.version, s.v5 = packet.Version5, &sessV5{aliasMax: 8}
		m := benchMessage(b, g, "sensors/k1/temp", 0)
		m.ContentType, m.CorrelationData, m.UTF8 = "application/json", []byte("req-1"), true
		m.ReplyTo = router.Destination{Kind: router.Topic, Path: []string{"reply", "k1"}}
		m.Headers = []router.Header{{Name: "trace", Value: "abc"}}
		m.Expires = time.Now().Add(time.Hour).UnixMilli()
		d := router.Delivery{Msg: m, Sub: sub}
		b.ReportAllocs()
		for b.Loop() {
			s.Deliver(d)
		}
	})
	b.Run("qos0_parallel", func(b *testing.B) {
		s, sub, g := benchSession(b, "sensors/+/temp", 0, &discardSender{})
		d := router.Delivery{Msg: benchMessage(b, g, "sensors/k1/temp", 0), Sub: sub}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.Deliver(d)
			}
		})
	})
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// TestQueuedMessageExpires: a message that expires while waiting in the session is not sent.
func TestQueuedMessageExpires(t *testing.T) {
	out := &discardSender{full: true}
	s, sub, g := benchSession(t, "t", 1, out)
	m := benchMessage(t, g, "t", 1)
	m.Expires = time.Now().Add(-time.Second).UnixMilli()
	fresh := benchMessage(t, g, "t", 1)
	s.Deliver(router.Delivery{Msg: m, Sub: sub})
	s.Deliver(router.Delivery{Msg: fresh, Sub: sub})
	out.full = false
	s.mu.Lock()
	s.pumpLocked()
	s.mu.Unlock()
	if out.n != 1 || len(s.inflight) != 1 || s.inflight[0].item.msg != fresh {
		t.Fatalf("sent %d, inflight %d: want only the fresh message", out.n, len(s.inflight))
	}
}

// TestQueueFullDropsQoS0First: when the session queue is full, QoS 0 messages go before QoS 1 ones,
// then the oldest.
func TestQueueFullDropsQoS0First(t *testing.T) {
	out := &discardSender{full: true}
	s, sub, g := benchSession(t, "t", 1, out)
	s.maxQueued = 3
	deliver := func(qos uint8, body string) {
		m := benchMessage(t, g, "t", qos)
		m.Body = []byte(body)
		s.Deliver(router.Delivery{Msg: m, Sub: sub})
	}
	deliver(1, "a")
	deliver(0, "b")
	deliver(1, "c")
	deliver(1, "d") // drops b (QoS 0)
	deliver(1, "e") // drops a (oldest)
	var bodies string
	for i := s.queue.head; i < len(s.queue.items); i++ {
		bodies += string(s.queue.items[i].msg.Body)
	}
	if bodies != "cde" || s.queue.live != 3 || s.queue.live0 != 0 || s.dropped != 2 {
		t.Fatalf("queue %q live %d live0 %d dropped %d, want cde 3 0 2", bodies, s.queue.live, s.queue.live0, s.dropped)
	}
}

// BenchmarkPublishFanIn measures the whole path over loopback: 8 publishers send QoS 0 PUBLISH packets
// for one topic, one subscriber receives them. ns/op is per message; "delivered" is the fraction that
// arrived (QoS 0 may be dropped when the subscriber's outbound queue is full).
func BenchmarkPublishFanIn(b *testing.B) {
	br := startBrokerLog(b, zap.NewNop(), nil)
	const pubs, batch = 8, 100
	connect := func(id string) (net.Conn, *packet.Reader) {
		nc, err := net.Dial("tcp", br.addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = nc.Close() })
		rd := packet.NewReader(bufio.NewReaderSize(nc, 64<<10), 0)
		rd.SetVersion(packet.Version311)
		_, _ = nc.Write(packet.Append(nil, &packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version311,
			ClientID: id, CleanSession: true}, packet.Version311))
		if _, err := rd.ReadPacket(); err != nil {
			b.Fatal(err)
		}
		return nc, rd
	}
	sub, rd := connect("sub")
	_, _ = sub.Write(packet.Append(nil, &packet.SubscribePacket{PacketID: 1,
		Subscriptions: []packet.Subscription{{Filter: "fan/#"}}}, packet.Version311))
	if _, err := rd.ReadPacket(); err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	go func() {
		for {
			if _, err := rd.ReadPacket(); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	msg := packet.Append(nil, &packet.PublishPacket{Topic: "fan/in", Payload: make([]byte, 64)}, packet.Version311)
	buf := make([]byte, 0, batch*len(msg))
	for range batch {
		buf = append(buf, msg...)
	}
	rounds := max(1, b.N/(pubs*batch))
	conns := make([]net.Conn, pubs)
	for i := range conns {
		conns[i], _ = connect("pub" + strconv.Itoa(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, nc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if _, err := nc.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	want := int64(rounds * pubs * batch)
	for deadline := time.Now().Add(5 * time.Second); got.Load() < want && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(got.Load())/float64(want), "delivered")
}

// TestOverlapDeliversOnceAtHighestQoS: a message matched by a wildcard and a literal subscription of one
// session is sent once, at the higher granted QoS, without allocating.
func TestOverlapDeliversOnceAtHighestQoS(t *testing.T) {
	out := &discardSender{}
	s, wild, g := benchSession(t, "sensors/#", 0, out)
	f, err := g.ParseFilter("sensors/k1/temp")
	if err != nil {
		t.Fatal(err)
	}
	e := &subEntry{key: "sensors/k1/temp", qos: 1}
	e.rs = &router.Subscription{Filter: f, Sink: s, QoS: 1, ID: e.key, Opaque: e}
	s.setEntryLocked(e, true)
	lit := e.rs

	m := benchMessage(t, g, "sensors/k1/temp", 1)
	for i := range 3 {
		m.ID = uint64(100 + i)
		s.Deliver(router.Delivery{Msg: m, Sub: wild})
		s.Deliver(router.Delivery{Msg: m, Sub: lit})
		if out.n != i+1 {
			t.Fatalf("message %d: %d packets sent, want one per message", i, out.n)
		}
		if last := s.inflight[len(s.inflight)-1]; last.item.qos != 1 {
			t.Fatalf("sent at QoS %d, want 1", last.item.qos)
		}
		s.complete(s.lastID, waitPuback)
	}
	other := benchMessage(t, g, "sensors/k2/temp", 1) // only the wildcard matches: QoS 0
	other.ID = 200
	s.Deliver(router.Delivery{Msg: other, Sub: wild})
	if out.n != 4 || len(s.inflight) != 0 {
		t.Fatalf("sent %d, inflight %d: want the k2 message at QoS 0", out.n, len(s.inflight))
	}
	if len(s.seen) != 0 {
		t.Fatalf("overlap table holds %d entries after every copy arrived", len(s.seen))
	}
	n := testing.AllocsPerRun(200, func() {
		m.ID++
		s.Deliver(router.Delivery{Msg: m, Sub: wild})
		s.Deliver(router.Delivery{Msg: m, Sub: lit})
		s.complete(s.lastID, waitPuback)
	})
	if n != 0 {
		t.Fatalf("%v allocs per overlapping delivery, want 0", n)
	}
}

// [MQTT-2.3.1-2] a packet id in use is never given again: a message left unacknowledged while the id
// space comes round (65535 later sends) keeps its id to itself, whether the session checks the oldest
// id alone or scans its window.
func TestNextIDSkipsIDsInUse_MQTT_2_3_1_2(t *testing.T) {
	s := &session{}
	lingering := s.nextIDLocked()
	s.inflight = append(s.inflight, inflightMsg{id: lingering})
	second := s.nextIDLocked()
	s.inflight = append(s.inflight, inflightMsg{id: second})
	seen := map[uint16]bool{lingering: true, second: true}
	for range 3 * 65535 {
		id := s.nextIDLocked()
		if id == 0 || seen[id] {
			t.Fatalf("id %d given while in use (in flight: %d, %d)", id, lingering, second)
		}
	}
	// A restored session's ids are in no known order: they are never reused either.
	r := &session{lastID: 10}
	for _, id := range []uint16{9, 11, 3} {
		r.inflight = append(r.inflight, inflightMsg{id: id})
	}
	for range 70000 {
		if id := r.nextIDLocked(); id == 9 || id == 11 || id == 3 || id == 0 {
			t.Fatalf("restored session reused id %d", id)
		}
	}
}
