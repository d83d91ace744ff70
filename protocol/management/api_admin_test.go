package management_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/lyremq/lyre/protocol/prototest"
)

type queuePage struct {
	Items []struct {
		Name      string `json:"name"`
		Depth     int    `json:"depth"`
		Unacked   int    `json:"unacked"`
		Consumers int    `json:"consumers"`
		Durable   bool   `json:"durable"`
		Bytes     int    `json:"bytes"`
		Enqueued  int    `json:"enqueued"`
	} `json:"items"`
	Total int `json:"total"`
}

// publishN publishes n messages "<prefix>0".."<prefix>n-1" to queue q of host b (anonymous).
func (f *fixture) publishN(q, prefix string, n int, query string) {
	f.t.Helper()
	for i := range n {
		f.expect(request{method: "POST", path: "/vhosts/b/queues/" + q + query, body: fmt.Sprint(prefix, i)}, http.StatusCreated, nil)
	}
}

// Queues listed with their depth and consumers, paged; purge keeps what is unacknowledged; delete is
// refused while a consumer is attached, then forgets the queue.
func TestQueueAdmin(t *testing.T) {
	f := newFixture(t)
	f.publishN("orders.eu", "m", 3, "?persistent=true")
	f.publishN("orders.us", "m", 1, "")
	var qs queuePage
	f.expect(request{method: "GET", path: "/vhosts/b/queues?page_size=1&page=1"}, http.StatusOK, &qs)
	if qs.Total != 2 || len(qs.Items) != 1 || qs.Items[0].Name != "orders.eu" || qs.Items[0].Depth != 3 ||
		!qs.Items[0].Durable || qs.Items[0].Enqueued != 3 || qs.Items[0].Bytes == 0 {
		t.Fatalf("queues page 1: %+v", qs)
	}
	st := f.stompOn("b", "")
	sub, err := st.Subscribe("/queue/orders.eu", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "1"))
	if err != nil {
		t.Fatal(err)
	}
	held := readStomp(t, sub)
	var q struct {
		Depth, Unacked, Consumers int
	}
	prototest.WaitForErr(t, 5*time.Second, func() error {
		f.expect(request{method: "GET", path: "/vhosts/b/queues/orders.eu"}, http.StatusOK, &q)
		if q.Depth != 2 || q.Unacked != 1 || q.Consumers != 1 {
			return fmt.Errorf("queue %+v", q)
		}
		return nil
	})
	f.expect(request{method: "DELETE", path: "/vhosts/b/queues/orders.eu"}, http.StatusConflict, nil)
	var purged map[string]int
	f.expect(request{method: "DELETE", path: "/vhosts/b/queues/orders.eu/messages"}, http.StatusOK, &purged)
	if purged["purged"] != 2 {
		t.Errorf("purged %v, want the 2 waiting", purged)
	}
	if err := st.Ack(held); err != nil {
		t.Fatal(err)
	}
	prototest.Unsubscribe(t, sub)
	f.publishN("orders.eu", "late", 1, "") // an empty queue without consumers is forgotten on its own
	prototest.WaitForErr(t, 5*time.Second, func() error {
		if s, body := f.do(request{method: "DELETE", path: "/vhosts/b/queues/orders.eu"}); s != http.StatusNoContent {
			return fmt.Errorf("delete: %d %s", s, body)
		}
		return nil
	})
	f.expect(request{method: "GET", path: "/vhosts/b/queues/orders.eu"}, http.StatusNotFound, nil)
	f.expect(request{method: "DELETE", path: "/vhosts/b/queues/orders.eu"}, http.StatusNotFound, nil)
	f.expect(request{method: "DELETE", path: "/vhosts/b/queues/nope/messages"}, http.StatusNotFound, nil)
	f.expect(request{method: "GET", path: "/vhosts/b/queues/bad.*"}, http.StatusBadRequest, nil)
}

// A move takes the oldest waiting messages, up to max, into the target; it stops at a full target with
// 409 and the count, dropping nothing.
func TestMoveMessages(t *testing.T) {
	f := newFixture(t)
	f.publishN("from", "m", 4, "?persistent=true")
	var moved map[string]int
	f.expect(request{method: "POST", path: "/vhosts/b/queues/from/move", body: `{"to": "to.q", "max": 3}`}, http.StatusOK, &moved)
	if moved["moved"] != 3 {
		t.Errorf("moved %v, want 3", moved)
	}
	sub, err := f.stompOn("b", "").Subscribe("/queue/to.q", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		got = append(got, string(readStomp(t, sub).Body))
	}
	if !slices.Equal(got, []string{"m0", "m1", "m2"}) {
		t.Errorf("moved messages %q", got)
	}
	// small.* holds one message.
	var full struct {
		Moved int    `json:"moved"`
		Error string `json:"error"`
	}
	f.publishN("from", "n", 1, "")
	f.expect(request{method: "POST", path: "/vhosts/b/queues/from/move", body: `{"to": "small.x"}`}, http.StatusConflict, &full)
	if full.Moved != 1 || !strings.Contains(full.Error, "full") {
		t.Errorf("move into a full queue: %+v", full)
	}
	var q struct{ Depth int }
	f.expect(request{method: "GET", path: "/vhosts/b/queues/from"}, http.StatusOK, &q)
	if q.Depth != 1 {
		t.Errorf("%d left behind, want 1", q.Depth)
	}
	for _, body := range []string{`{"to": "from"}`, `{"to": "a.*"}`, `{"max": 1}`, `{"to": "x", "max": -1}`, `{"to": "x", "bogus": 1}`, `nonsense`} {
		f.expect(request{method: "POST", path: "/vhosts/b/queues/from/move", body: body}, http.StatusBadRequest, nil)
	}
	f.expect(request{method: "POST", path: "/vhosts/b/queues/none/move", body: `{"to": "x"}`}, http.StatusNotFound, nil)
}

// Topics, durable subscriptions and retained messages as the listings show them; deleting a retained
// message sends nothing to subscribers.
func TestTopicsDsubsRetained(t *testing.T) {
	f := newFixture(t)
	st := f.stompOn("b", "")
	live, err := st.Subscribe("/topic/sensors.*.temp", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Subscribe("/topic/sensors.**", stomp.AckAuto, stomp.SubscribeOpt.Id("audit"),
		stomp.SubscribeOpt.Header("persistent", "true")); err != nil {
		t.Fatal(err)
	}
	f.waitSubscriptions("b", 2)
	f.expect(request{method: "POST", path: "/vhosts/b/topics/sensors.k1.temp?retain&ttl=1h", body: "21",
		headers: []string{"Content-Type: text/plain"}}, http.StatusCreated, nil)
	if m := readStomp(t, live); string(m.Body) != "21" {
		t.Fatalf("live %q", m.Body)
	}
	var topics struct {
		Items []map[string]any `json:"items"`
	}
	f.expect(request{method: "GET", path: "/vhosts/b/topics"}, http.StatusOK, &topics)
	got := fmt.Sprint(topics.Items)
	for _, want := range []string{"name:sensors.k1.temp", "name:sensors.*.temp", "name:sensors.**", "durable_subscribers:1", "retained:true"} {
		if !strings.Contains(got, want) {
			t.Errorf("topics %s lack %s", got, want)
		}
	}
	var dsubs struct {
		Items []struct {
			ID, Filter string
			Depth      int
			Consumers  int
		} `json:"items"`
	}
	f.expect(request{method: "GET", path: "/vhosts/b/dsubs"}, http.StatusOK, &dsubs)
	if len(dsubs.Items) != 1 || dsubs.Items[0].ID != "audit" || dsubs.Items[0].Filter != "sensors.**" || dsubs.Items[0].Consumers != 1 {
		t.Errorf("dsubs %+v", dsubs.Items)
	}
	var ret struct {
		Items []struct {
			Topic       string    `json:"topic"`
			Size        int       `json:"size"`
			ContentType string    `json:"content_type"`
			ExpiresAt   time.Time `json:"expires_at"`
		} `json:"items"`
	}
	f.expect(request{method: "GET", path: "/vhosts/b/retained"}, http.StatusOK, &ret)
	if len(ret.Items) != 1 || ret.Items[0].Topic != "sensors.k1.temp" || ret.Items[0].Size != 2 ||
		ret.Items[0].ContentType != "text/plain" || time.Until(ret.Items[0].ExpiresAt) < 50*time.Minute {
		t.Errorf("retained %+v", ret.Items)
	}
	f.expect(request{method: "DELETE", path: "/vhosts/b/retained/sensors.k1.temp"}, http.StatusNoContent, nil)
	f.expect(request{method: "DELETE", path: "/vhosts/b/retained/sensors.k1.temp"}, http.StatusNotFound, nil)
	f.expect(request{method: "GET", path: "/vhosts/b/retained"}, http.StatusOK, &ret)
	if len(ret.Items) != 0 {
		t.Errorf("retained after delete: %+v", ret.Items)
	}
	select {
	case m := <-live.C:
		t.Errorf("a subscriber got %q from the deletion", m.Body)
	case <-time.After(100 * time.Millisecond):
	}
}

// Connections listed broker-wide (those of one host with ?vhost=) and per host, paged; a client is
// disconnected only through its own host; an online session cannot be deleted, an offline one can.
func TestConnectionsAndSessions(t *testing.T) {
	f := newFixture(t)
	c1 := f.mqttSession("dev1", "admin", "sensors/#")
	f.mqttOn("dev2", "admin")
	f.stompOn("b", "")
	type connPage struct {
		Items []struct {
			ID            uint64   `json:"id"`
			Protocol      string   `json:"protocol"`
			VHost         string   `json:"vhost"`
			User          string   `json:"user"`
			ClientID      string   `json:"client_id"`
			Version       string   `json:"version"`
			Persistent    bool     `json:"persistent"`
			Subscriptions []string `json:"subscriptions"`
			BytesIn       int      `json:"bytes_in"`
		} `json:"items"`
		Total int `json:"total"`
	}
	var all, onB, onA, page2 connPage
	f.expect(request{method: "GET", path: "/connections", user: "ops"}, http.StatusOK, &all)
	f.expect(request{method: "GET", path: "/connections?vhost=b", user: "ops"}, http.StatusOK, &onB)
	f.expect(request{method: "GET", path: "/vhosts/a/connections", user: "tenant"}, http.StatusOK, &onA)
	f.expect(request{method: "GET", path: "/vhosts/a/connections?page=2&page_size=1", user: "tenant"}, http.StatusOK, &page2)
	if all.Total != 3 || onB.Total != 1 || onB.Items[0].Protocol != "stomp" || onA.Total != 2 || page2.Total != 2 || len(page2.Items) != 1 {
		t.Fatalf("all %+v\non b %+v\non a %+v\npage 2 %+v", all, onB, onA, page2)
	}
	d1 := onA.Items[0]
	if d1.ClientID != "dev1" || d1.User != "admin" || d1.Version != "3.1.1" || !d1.Persistent ||
		!slices.Equal(d1.Subscriptions, []string{"sensors/#"}) || page2.Items[0].ClientID != "dev2" {
		t.Errorf("connection %+v", d1)
	}
	f.expect(request{method: "GET", path: "/connections?vhost=nope", user: "ops"}, http.StatusNotFound, nil)
	f.expect(request{method: "DELETE", path: fmt.Sprintf("/vhosts/b/connections/%d", d1.ID)}, http.StatusNotFound, nil)
	f.expect(request{method: "DELETE", path: "/vhosts/a/connections/x", user: "admin"}, http.StatusBadRequest, nil)
	f.expect(request{method: "DELETE", path: "/vhosts/a/sessions/dev1", user: "admin"}, http.StatusConflict, nil)
	f.expect(request{method: "DELETE", path: fmt.Sprintf("/vhosts/a/connections/%d", d1.ID), user: "admin"}, http.StatusNoContent, nil)
	prototest.WaitFor(t, 5*time.Second, func() bool { return !c1.IsConnectionOpen() })
	var sessions struct {
		Items []struct {
			ClientID      string   `json:"client_id"`
			Online        bool     `json:"online"`
			Persistent    bool     `json:"persistent"`
			Subscriptions []string `json:"subscriptions"`
		} `json:"items"`
	}
	prototest.WaitForErr(t, 5*time.Second, func() error {
		f.expect(request{method: "GET", path: "/vhosts/a/sessions", user: "tenant"}, http.StatusOK, &sessions)
		if s := fmt.Sprint(sessions.Items); s != "[{dev1 false true [sensors/#]} {dev2 true false []}]" {
			return fmt.Errorf("sessions %s", s)
		}
		return nil
	})
	f.expect(request{method: "DELETE", path: "/vhosts/a/sessions/dev1", user: "admin"}, http.StatusNoContent, nil)
	f.expect(request{method: "DELETE", path: "/vhosts/a/sessions/dev1", user: "admin"}, http.StatusNotFound, nil)
}
