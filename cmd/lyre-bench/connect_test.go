package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lyremq/lyre/protocol/prototest"
)

// connectServer is an MQTT server that only accepts connections: it answers each CONNECT with a CONNACK,
// refusing (code 4) the user name "bad", and records the client ids it saw and the DISCONNECTs it got.
type connectServer struct {
	addr        string
	mu          sync.Mutex
	ids         map[string]int
	disconnects int
}

func newConnectServer(t *testing.T) *connectServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &connectServer{addr: ln.Addr().String(), ids: map[string]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(c) })
		}
	})
	return s
}

func (s *connectServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	pr := newPacketReader(c, 256, 1024)
	hdr, body, err := pr.next()
	if err != nil || hdr>>4 != mqttCONNECT || len(body) < 12 {
		return
	}
	flags, rest := body[7], body[10:]
	id, rest := readString(rest)
	code := byte(0)
	if flags&0x80 != 0 {
		if user, _ := readString(rest); user == "bad" {
			code = 4
		}
	}
	s.mu.Lock()
	s.ids[id]++
	s.mu.Unlock()
	if _, err := c.Write([]byte{mqttCONNACK << 4, 2, 0, code}); err != nil || code != 0 {
		return
	}
	if hdr, _, err := pr.next(); err == nil && hdr>>4 == mqttDISCONNECT {
		s.mu.Lock()
		s.disconnects++
		s.mu.Unlock()
	}
}

func readString(b []byte) (string, []byte) {
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) > len(b)-2 {
		return "", nil
	}
	n := int(binary.BigEndian.Uint16(b))
	return string(b[2 : 2+n]), b[2+n:]
}

func (s *connectServer) counts() (ids, attempts, disconnects int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.ids {
		attempts += n
	}
	return len(s.ids), attempts, s.disconnects
}

func TestConnectMode(t *testing.T) {
	for _, fresh := range []bool{true, false} {
		s := newConnectServer(t)
		args := []string{"-mode", "connect", "-addr", s.addr, "-conns", "4", "-duration", "300ms"}
		if !fresh {
			args = append(args, "-fresh-ids=false")
		}
		c, err := parseFlags(args, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		r := connectRun(context.Background(), c, nil)
		if r.failed() || r.Connects < 10 || r.Interrupted || r.Latency.Count != r.Connects || r.Rate <= 0 {
			t.Fatalf("fresh %v: %+v", fresh, r)
		}
		if r.Seconds < 0.3 || r.Seconds > 3 {
			t.Fatalf("fresh %v: ran %.2fs for -duration 300ms", fresh, r.Seconds)
		}
		// The server may still be reading the last DISCONNECTs.
		prototest.WaitFor(t, 2*time.Second, func() bool {
			_, _, d := s.counts()
			return uint64(d) == r.Connects
		})
		ids, attempts, _ := s.counts()
		if uint64(attempts) != r.Connects {
			t.Fatalf("fresh %v: the server saw %d CONNECTs, the run counted %d", fresh, attempts, r.Connects)
		}
		if want := 4; fresh && ids != attempts || !fresh && ids != want {
			t.Fatalf("fresh %v: %d client ids for %d attempts", fresh, ids, attempts)
		}
	}
}

// A refused CONNACK is counted, reported and fails the run (exit 1).
func TestConnectModeRefused(t *testing.T) {
	s := newConnectServer(t)
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"-mode", "connect", "-addr", s.addr, "-conns", "2", "-duration", "200ms",
		"-user", "bad", "-pass", "x", "-json", "-q"}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, stderr.String())
	}
	var r connectResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("%v in %s", err, stdout.String())
	}
	if r.Connects != 0 || r.Refused == 0 || r.Failed != 0 || len(r.Errors) == 0 || !strings.Contains(r.Errors[0], "bad user name or password") {
		t.Fatalf("result %+v", r)
	}
	for _, args := range [][]string{{"-conns", "0"}, {"-conns", "10001"}, {"-count", "5"}} {
		if code := realMain(append([]string{"-mode", "connect"}, args...), &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestConnectModeSTOMP(t *testing.T) {
	p := newStompPeer(t, "1.2", 0)
	c, err := parseFlags([]string{"-proto", "stomp", "-mode", "connect", "-addr", p.addr, "-conns", "2", "-duration", "200ms"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	r := connectRun(context.Background(), c, nil)
	if r.failed() || r.Connects == 0 {
		t.Fatalf("%+v", r)
	}
	refusing := newStompPeer(t, "1.2", 0)
	refusing.refuse = "access denied"
	c.addr, c.stompAddr = refusing.addr, refusing.addr
	if r := connectRun(context.Background(), c, nil); r.Refused == 0 || r.Connects != 0 || !r.failed() {
		t.Fatalf("refusing peer: %+v", r)
	}
}
