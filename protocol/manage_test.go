package protocol_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
)

// mgmtEcho answers every request with its connector, method, path and body.
func mgmtEcho(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	name := ""
	if c := protocol.ConnectorOf(r.Context()); c != nil {
		name = c.Name
	}
	fmt.Fprintf(w, "%s %s %s %s", name, r.Method, r.URL.Path, body)
}

// A request that is not a WebSocket upgrade goes to the management handler on a connector with
// management on: a plain GET, a POST with a body, several on one kept-alive connection; the WebSocket
// paths still answer 426 to a plain GET, and a connector without management still answers 404.
func TestManagementRequestsHandedOff(t *testing.T) {
	setup := func(mgmt bool) (*protocol.Server, string) {
		h := newCapture()
		srv, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h},
			conf.Connector{Name: "api", Detect: []string{"mqtt", "stomp", "http"}, Management: mgmt,
				DetectTimeout: 5 * time.Second, MaxConnections: 100}, func(s *protocol.Server) {
				s.SetManagement(http.HandlerFunc(mgmtEcho))
			})
		return srv, addr
	}
	srv, addr := setup(true)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	get := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, got := get("GET", "/metrics", ""); code != 200 || got != "api GET /metrics " {
		t.Errorf("GET /metrics = %d %q", code, got)
	}
	big := strings.Repeat("x", 100<<10) // more than the request buffer read while detecting
	if code, got := get("POST", "/api/v1/x", big); code != 200 || got != "api POST /api/v1/x "+big {
		t.Errorf("POST with a 100 KiB body = %d, %d bytes", code, len(got))
	}
	// A body short enough to arrive with the header, whole, while detecting: what the request reader
	// left unread of the sniffed bytes must reach the handler too.
	for _, n := range []int{500, 2 << 10, 3000} {
		small := strings.Repeat("y", n)
		fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // a new connection each time
		resp, err := fresh.Post("http://"+addr+"/api/v1/y", "text/plain", strings.NewReader(small))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "api POST /api/v1/y "+small {
			t.Errorf("POST with a %d-byte body on a new connection = %d, %d bytes", n, resp.StatusCode, len(b))
		}
	}
	if code, got := get("GET", "/again", ""); code != 200 || got != "api GET /again " {
		t.Errorf("GET /again = %d %q", code, got)
	}
	if code, _ := get("GET", "/mqtt", ""); code != http.StatusUpgradeRequired {
		t.Errorf("GET /mqtt on a kept-alive connection = %d, want 426", code)
	}
	if code, _ := get("GET", "/stomp", ""); code != http.StatusUpgradeRequired {
		t.Errorf("GET /stomp on a new connection = %d, want 426", code)
	}
	st := srv.ConnectorStats()
	if len(st) != 1 || st[0].Accepted != 5 || st[0].Refused[protocol.RefusedHTTP] != 1 {
		t.Errorf("connector stats = %+v, want 5 accepted and one http refusal (the 426 while detecting)", st)
	}

	// Every connection handed off gives its slot back once, when it closes.
	client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for srv.ConnectorStats()[0].Active != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if a := srv.ConnectorStats()[0].Active; a != 0 {
		t.Errorf("%d connections active after the client closed its own, want 0", a)
	}

	_, addr2 := setup(false)
	resp, err := http.Get("http://" + addr2 + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("without management GET /metrics = %d, want 404", resp.StatusCode)
	}
}

// Pipelined requests read in one go while detecting are all answered, in order.
func TestManagementPipelined(t *testing.T) {
	h := newCapture()
	_, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: h},
		conf.Connector{Name: "api", Detect: []string{"mqtt", "http"}, Management: true,
			DetectTimeout: 5 * time.Second, MaxConnections: 100}, func(s *protocol.Server) {
			s.SetManagement(http.HandlerFunc(mgmtEcho))
		})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, _ = io.WriteString(nc, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(nc)
	for _, want := range []string{"api GET /a ", "api GET /b "} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("got %q, want %q", b, want)
		}
	}
}

// Traffic counts socket bytes and the messages front-ends report (received, sent, dropped); Connections
// lists the session a front-end attached, and Disconnect ends the connection; ConnectorStats keeps an
// ended connection's traffic, drops included.
func TestConnectionsAndTraffic(t *testing.T) {
	var (
		mu   sync.Mutex
		conn *protocol.Conn
	)
	ready := make(chan struct{})
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		c.SetSession(fakeSession{})
		mu.Lock()
		conn = c
		mu.Unlock()
		buf := make([]byte, 64)
		n, _ := c.Reader().Read(buf)
		c.CountIn(1)
		c.Write(buf[:n])
		c.CountOut(1)
		c.CountDropped(2)
		close(ready)
		<-c.Done()
	})
	// Detected: the bytes read while sniffing count too.
	srv, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: h},
		conf.Connector{Detect: []string{"mqtt"}, DetectTimeout: 5 * time.Second, MaxConnections: 10}, nil)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	connect := []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0} // MQTT 3.1.1 CONNECT
	_, _ = nc.Write(connect)
	<-ready
	echo := make([]byte, len(connect))
	if _, err := io.ReadFull(nc, echo); err != nil {
		t.Fatal(err)
	}
	// The writer counts what it wrote once the write returns, which may be after the client read it.
	deadline := time.Now().Add(5 * time.Second)
	list := srv.Connections()
	for len(list) == 1 && list[0].Traffic.BytesOut < uint64(len(connect)) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		list = srv.Connections()
	}
	if len(list) != 1 {
		t.Fatalf("Connections = %+v, want one", list)
	}
	ci := list[0]
	want := protocol.Traffic{BytesIn: 14, BytesOut: 14, MessagesIn: 1, MessagesOut: 1, Dropped: 2}
	if ci.Traffic != want || !ci.LoggedIn || ci.Session.ClientID != "dev1" || ci.Protocol != protocol.MQTT ||
		ci.Transport != "tcp" || ci.Remote != nc.LocalAddr().String() || time.Since(ci.Since) > time.Minute {
		t.Errorf("connection = %+v, want traffic %+v and the session of dev1", ci, want)
	}
	if srv.Disconnect(ci.ID + 1000) {
		t.Error("Disconnect of an unknown id reported true")
	}
	if !srv.Disconnect(ci.ID) {
		t.Fatal("Disconnect reported false")
	}
	mu.Lock()
	c := conn
	mu.Unlock()
	<-c.Done()
	if c.Err() != protocol.ErrKicked {
		t.Errorf("close reason %v, want ErrKicked", c.Err())
	}
	deadline = time.Now().Add(5 * time.Second)
	for len(srv.Connections()) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := srv.ConnectorStats()[0]
	if len(st.Traffic) != 1 || st.Traffic[0].Traffic != want || st.Traffic[0].VirtualHost != "h" || st.Accepted != 1 {
		t.Errorf("connector stats after the close = %+v, want the connection's traffic kept", st)
	}
}

type fakeSession struct{}

func (fakeSession) Describe() protocol.SessionInfo {
	return protocol.SessionInfo{VirtualHost: "h", User: "alice", ClientID: "dev1", Version: "3.1.1"}
}

// An https:// connector with management serves the management handler over TLS, and a detecting
// connector with TLS serves it inside TLS too.
func TestManagementOverTLS(t *testing.T) {
	p := newPKI(t)
	for _, c := range []conf.Connector{
		{Name: "https", Bind: "https://127.0.0.1:0", TLS: p.tlsConf("none"), Management: true},
		{Name: "shared", Bind: "tcp://127.0.0.1:0", TLS: p.tlsConf("none"), Management: true,
			Detect: []string{protocol.TLS, protocol.MQTT, protocol.HTTP}},
	} {
		h := newCapture()
		c.DetectTimeout, c.MaxConnections = 5*time.Second, 10
		_, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h}, c,
			func(s *protocol.Server) { s.SetManagement(http.HandlerFunc(mgmtEcho)) })
		tr := &http.Transport{TLSClientConfig: p.client("localhost")}
		resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/metrics")
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if want := c.Name + " GET /metrics "; resp.StatusCode != 200 || string(b) != want {
			t.Errorf("%s: GET /metrics over TLS = %d %q, want 200 %q", c.Name, resp.StatusCode, b, want)
		}
	}
}
