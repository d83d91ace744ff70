package virtualhost

import (
	"reflect"
	"testing"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
)

// Every attribute a message is stored with comes back from the store's form; what the store does not
// keep (the origin's grammar, the publisher, the tracker) is left out of the comparison.
func TestMessageConversionRoundTrip(t *testing.T) {
	for _, m := range []*router.Message{
		{ID: 7, Dest: router.Destination{Kind: router.Queue, Path: []string{"rpc", ""}}, Body: []byte("ping"), QoS: 1,
			Persistent: true, Retain: true, Expires: 1 << 42, ContentType: "text/plain",
			Headers: []router.Header{{Name: "a", Value: "1"}, {Name: "a", Value: "2"}}, Priority: 3, Group: "g",
			ReplyTo:         router.Destination{Kind: router.TempQueue, Path: []string{"lyre-1", "answers"}},
			CorrelationData: []byte{0, 0xff}, UTF8: true, Origin: "/queue/rpc."},
		{ID: 8, Dest: router.Destination{Kind: router.Topic, Path: []string{"t"}}, ReplyTo: router.Destination{Path: []string{"a", "b"}}},
		{ID: 9, Dest: router.Destination{Kind: router.Topic, Path: []string{"t"}}, CorrelationData: []byte("c")},
		{ID: 10, Dest: router.Destination{Kind: router.Topic, Path: []string{"t"}}},
	} {
		sm := storeMessage(m)
		got := routerMessage(sm)
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v\nstored %+v", got, m, sm)
		}
	}
	// A reply-to kind without a path is no reply-to: the store keeps neither.
	sm := storeMessage(&router.Message{ID: 1, ReplyTo: router.Destination{Kind: router.Queue}})
	if want := (&store.Message{ID: 1}); !reflect.DeepEqual(sm, want) {
		t.Fatalf("empty reply-to stored as %+v", sm)
	}
}
