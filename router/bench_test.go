package router

import (
	"fmt"
	"testing"
)

const benchSubs = 100_000

// benchRouter builds a router with benchSubs subscriptions of one flavour:
//
//	literal:  site/<i/100>/dev/<i%100>
//	wildcard: half literal as above, half site/<i/100>/+/<i%100> and site/<i/100>/#
//	regex:    literal as above, plus one {regex} edge per site (1000) matching any device
func benchRouter(b *testing.B, flavour string, cacheSize int) *Router {
	b.Helper()
	r := New(Options{CacheSize: cacheSize})
	lit := func(s string) Seg { return Seg{Kind: SegLiteral, Text: s} }
	for i := range benchSubs {
		site, dev := fmt.Sprint(i/100), fmt.Sprint(i%100)
		segs := []Seg{lit("site"), lit(site), lit("dev"), lit(dev)}
		if flavour == "wildcard" && i%2 == 1 {
			if i%4 == 1 {
				segs = []Seg{lit("site"), lit(site), {Kind: SegOne}, lit(dev)}
			} else {
				segs = []Seg{lit("site"), lit(site), {Kind: SegMany}}
			}
		}
		if err := r.Subscribe(&Subscription{Filter: Filter{Kind: Topic, Segs: segs}, Sink: nopSink{}}); err != nil {
			b.Fatal(err)
		}
	}
	if flavour == "regex" {
		for site := range benchSubs / 100 {
			segs := []Seg{lit("site"), lit(fmt.Sprint(site)), lit("dev"), {Kind: SegRegex, Text: `[0-9]{1,2}`}}
			if err := r.Subscribe(&Subscription{Filter: Filter{Kind: Topic, Segs: segs}, Sink: nopSink{}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	return r
}

func benchTopics(n int) [][]string {
	out := make([][]string, n)
	for i := range out {
		j := (i * 7919) % benchSubs
		out[i] = []string{"site", fmt.Sprint(j / 100), "dev", fmt.Sprint(j % 100)}
	}
	return out
}

// BenchmarkMatch: "hit" matches one topic again and again (cache hit); "nocache" walks the trie each time;
// "churn" cycles over 16k topics with the default 4096-entry cache, so nearly every lookup misses and fills.
func BenchmarkMatch(b *testing.B) {
	for _, flavour := range []string{"literal", "wildcard", "regex"} {
		b.Run(flavour, func(b *testing.B) {
			cached := benchRouter(b, flavour, 0)
			uncached := benchRouter(b, flavour, -1)
			topic := []string{"site", "421", "dev", "37"}
			want := len(uncached.Match(topic).Subs)
			if want == 0 {
				b.Fatal("benchmark topic matches nothing")
			}
			b.Run("hit", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if len(cached.Match(topic).Subs) != want {
						b.Fatal("wrong match")
					}
				}
			})
			b.Run("nocache", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if len(uncached.Match(topic).Subs) != want {
						b.Fatal("wrong match")
					}
				}
			})
			topics := benchTopics(16 << 10)
			b.Run("churn", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					cached.Match(topics[i&(len(topics)-1)])
					i++
				}
			})
			b.Run("parallel_hit", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						cached.Match(topic)
					}
				})
			})
			b.Run("parallel_nocache", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						uncached.Match(topic)
					}
				})
			})
		})
	}
}

// BenchmarkPublish measures topic fan-out to n no-op sinks, with the match cached.
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1, 10, 1000} {
		r := New(Options{})
		f := Filter{Kind: Topic, Segs: []Seg{{Kind: SegLiteral, Text: "a"}, {Kind: SegOne}}}
		for range n {
			r.Subscribe(&Subscription{Filter: f, Sink: nopSink{}})
		}
		m := &Message{Dest: Destination{Kind: Topic, Path: []string{"a", "b"}}, Body: []byte("hello")}
		b.Run(fmt.Sprintf("fanout_%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if pr := r.Publish(m); pr.Delivered != n {
					b.Fatalf("delivered %d", pr.Delivered)
				}
			}
		})
		b.Run(fmt.Sprintf("parallel_fanout_%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				m := &Message{Dest: Destination{Kind: Topic, Path: []string{"a", "b"}}, Body: []byte("hello")}
				for pb.Next() {
					r.Publish(m)
				}
			})
		})
	}
	// A message to one member of a 10-member shared group, per strategy ("share_10" is round robin).
	for _, st := range strategies {
		name := "share_10"
		if st != ShareRoundRobin {
			name += "_" + st.String()
		}
		b.Run(name, func(b *testing.B) {
			r := New(Options{ShareStrategy: st})
			f := Filter{Kind: Topic, Segs: []Seg{{Kind: SegLiteral, Text: "a"}, {Kind: SegOne}}}
			for range 10 {
				r.Subscribe(&Subscription{Filter: f, Sink: nopSink{}, Share: "g"})
			}
			m := &Message{Dest: Destination{Kind: Topic, Path: []string{"a", "b"}}, Body: []byte("hello"), SenderID: "client-1"}
			b.ReportAllocs()
			for b.Loop() {
				if pr := r.Publish(m); pr.Delivered != 1 {
					b.Fatalf("%+v", pr)
				}
			}
		})
	}
	// Fan-out to 10 sinks that are asked first (Acceptor) and accept.
	b.Run("fanout_10_acceptor", func(b *testing.B) {
		r := New(Options{})
		f := Filter{Kind: Topic, Segs: []Seg{{Kind: SegLiteral, Text: "a"}, {Kind: SegOne}}}
		for range 10 {
			r.Subscribe(&Subscription{Filter: f, Sink: acceptAllSink{}})
		}
		m := &Message{Dest: Destination{Kind: Topic, Path: []string{"a", "b"}}, Body: []byte("hello")}
		b.ReportAllocs()
		for b.Loop() {
			if pr := r.Publish(m); pr.Delivered != 10 {
				b.Fatalf("%+v", pr)
			}
		}
	})
	b.Run("queue_autoack", func(b *testing.B) {
		r := New(Options{})
		d := Destination{Kind: Queue, Path: []string{"q"}}
		r.Consume(&Subscription{Filter: Filter{Kind: Queue, Segs: []Seg{{Kind: SegLiteral, Text: "q"}}}, Sink: nopSink{}}, ConsumerOptions{AutoAck: true})
		m := &Message{Dest: d, Body: []byte("hello")}
		b.ReportAllocs()
		for b.Loop() {
			if pr := r.Publish(m); pr.Delivered != 1 {
				b.Fatalf("%+v", pr)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	b.Run("mqtt_name", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mqttG.ParseName("sensors/k1/temp")
		}
	})
	b.Run("stomp_name", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			stompG.ParseName("/topic/sensors.k1.temp")
		}
	})
	d := Destination{Kind: Topic, Path: []string{"sensors", "v1.2", "temp"}}
	b.Run("stomp_render", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			stompG.Render(d)
		}
	})
}

// acceptAllSink is a no-op sink that is asked before each delivery and accepts.
type acceptAllSink struct{}

func (acceptAllSink) Deliver(Delivery) bool { return true }
func (acceptAllSink) Accepts(*Message) bool { return true }
