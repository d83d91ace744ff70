package packet

import (
	"bytes"
	"errors"
	"testing"
)

// TestMaxFilters: SetMaxFilters stops decoding a SUBSCRIBE or UNSUBSCRIBE at the first filter too many,
// so a packet of a million filters costs a bounded number of allocations, not one per filter.
func TestMaxFilters(t *testing.T) {
	sub := &SubscribePacket{PacketID: 1, Subscriptions: make([]Subscription, 1000000)}
	unsub := &UnsubscribePacket{PacketID: 1, Filters: make([]string, 1000000)}
	for i := range sub.Subscriptions {
		sub.Subscriptions[i].Filter, unsub.Filters[i] = "x", "x"
	}
	for _, p := range []Packet{sub, unsub} {
		raw := Append(nil, p, Version311)
		allocs := testing.AllocsPerRun(1, func() {
			r := NewReader(bytes.NewReader(raw), 0)
			r.SetMaxFilters(1000)
			if _, err := r.ReadPacket(); !errors.Is(err, ErrTooManyFilters) || ReasonFor(err) != ReasonQuotaExceeded {
				t.Fatalf("%s: %v", p.Type(), err)
			}
		})
		if allocs > 2000 {
			t.Errorf("%s: %v allocations to refuse a million filters", p.Type(), allocs)
		}
	}
	r := NewReader(bytes.NewReader(Append(nil, &SubscribePacket{PacketID: 1, Subscriptions: sub.Subscriptions[:3]}, Version311)), 0)
	r.SetMaxFilters(3)
	if _, err := r.ReadPacket(); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
}
