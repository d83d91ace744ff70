package main

// The crash test: the broker runs as a child process (this test binary re-executed with crashChildEnv
// set) and is killed with SIGKILL while publishers stream numbered messages. After each restart every
// message acknowledged before a kill must be delivered: at least once at QoS 1 (and for STOMP persistent
// messages), exactly once at QoS 2. Streams: MQTT QoS 1 and STOMP persistent to an offline MQTT session,
// MQTT QoS 2 to it, MQTT QoS 1 and STOMP persistent to a queue, STOMP persistent to a durable
// subscription.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
)

// crashChildEnv names the config file a re-executed test binary serves as a broker.
const crashChildEnv = "LYRE_CRASH_TEST_BROKER"

func init() {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		return
	}
	// The child: run a broker until killed. Init runs before TestMain, so no test runs here.
	cfg, err := conf.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	b, err := Start(cfg, zap.NewNop())
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	fmt.Printf("ADDR %s\n", b.Addrs()[cfg.Connectors[0].Name])
	select {}
}

// child is a broker process.
type child struct {
	cmd  *exec.Cmd
	addr string
}

func startChild(t *testing.T, cfgPath string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+cfgPath)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				line <- a
				_, _ = io.Copy(io.Discard, out)
				return
			}
		}
		line <- "" // exited without serving
	}()
	select {
	case a := <-line:
		if a == "" {
			_ = cmd.Wait()
			t.Fatal("broker child exited without serving")
		}
		return &child{cmd: cmd, addr: a}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("broker child did not start")
		return nil
	}
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill() // SIGKILL
	_ = c.cmd.Wait()
}

// mq is a minimal MQTT 3.1.1 client over the packet codec.
type mq struct {
	nc net.Conn
	rd *packet.Reader
}

func mqDial(addr, id string, clean bool) (*mq, bool, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, false, err
	}
	c := &mq{nc: nc, rd: packet.NewReader(nc, 0)}
	c.rd.SetVersion(packet.Version311)
	if err := c.send(&packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version311,
		CleanSession: clean, KeepAlive: 60, ClientID: id}); err != nil {
		nc.Close()
		return nil, false, err
	}
	p, err := c.next(5 * time.Second)
	ca, ok := p.(*packet.ConnackPacket)
	if err != nil || !ok || ca.ReturnCode != 0 {
		nc.Close()
		return nil, false, fmt.Errorf("connack: %v %#v", err, p)
	}
	return c, ca.SessionPresent, nil
}

func (c *mq) send(ps ...packet.Packet) error {
	var b []byte
	for _, p := range ps {
		b = packet.Append(b, p, packet.Version311)
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

func (c *mq) next(d time.Duration) (packet.Packet, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	return c.rd.ReadPacket()
}

// acked records what the broker acknowledged, by name.
type acked struct {
	mu  sync.Mutex
	set map[string]bool
}

func (a *acked) add(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.set == nil {
		a.set = make(map[string]bool)
	}
	a.set[name] = true
}

func (a *acked) names() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.set))
	for n := range a.set {
		out = append(out, n)
	}
	return out
}

// pubMQTT1 publishes QoS 1 messages "<prefix>-<n>" to topic from n = *next on, window by window, until
// the connection fails (the broker was killed) or stop closes; PUBACKed names go to a.
func pubMQTT1(addr, id, topic, prefix string, next *int, a *acked, stop <-chan struct{}) error {
	c, _, err := mqDial(addr, id, true)
	if err != nil {
		return err
	}
	defer c.nc.Close()
	const window = 32
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		names := make(map[uint16]string, window)
		var ps []packet.Packet
		for i := range window {
			n := *next + i
			pid := uint16(n%60000 + 1)
			names[pid] = prefix + "-" + strconv.Itoa(n)
			ps = append(ps, &packet.PublishPacket{Topic: topic, QoS: 1, PacketID: pid, Payload: []byte(names[pid])})
		}
		*next += window // numbers are never reused: an unacknowledged one may still arrive
		if err := c.send(ps...); err != nil {
			return err
		}
		for range window {
			p, err := c.next(10 * time.Second)
			if err != nil {
				return err
			}
			pa, ok := p.(*packet.PubackPacket)
			if !ok {
				return fmt.Errorf("got %s, want PUBACK", p.Type())
			}
			a.add(names[pa.PacketID])
		}
	}
}

// qos2Pub publishes QoS 2 messages one at a time with a persistent session, resuming an interrupted
// exchange after a reconnect as MQTT requires: PUBLISH again with DUP before PUBREC, PUBREL after.
type qos2Pub struct {
	n     int // the message in progress
	stage int // 0: not sent, 1: PUBLISH sent, 2: PUBREC received (PUBREL to send)
	a     acked
}

func (q *qos2Pub) run(addr, topic string, stop <-chan struct{}, limit int) error {
	c, _, err := mqDial(addr, "pub-qos2", false)
	if err != nil {
		return err
	}
	defer c.nc.Close()
	for {
		pid := uint16(q.n%60000 + 1)
		name := "q2-" + strconv.Itoa(q.n)
		switch q.stage {
		case 0, 1:
			if q.stage == 0 {
				select {
				case <-stop:
					return nil
				default:
				}
				if limit > 0 && q.n >= limit {
					return nil
				}
			}
			if err := c.send(&packet.PublishPacket{Topic: topic, QoS: 2, PacketID: pid, Dup: q.stage == 1, Payload: []byte(name)}); err != nil {
				return err
			}
			q.stage = 1
			p, err := c.next(10 * time.Second)
			if err != nil {
				return err
			}
			if pr, ok := p.(*packet.PubrecPacket); !ok || pr.PacketID != pid {
				return fmt.Errorf("got %#v, want PUBREC %d", p, pid)
			}
			q.stage = 2
			q.a.add(name) // PUBREC: the broker owns the message now
		case 2:
			if err := c.send(&packet.PubrelPacket{PacketID: pid}); err != nil {
				return err
			}
			p, err := c.next(10 * time.Second)
			if err != nil {
				return err
			}
			if pc, ok := p.(*packet.PubcompPacket); !ok || pc.PacketID != pid {
				return fmt.Errorf("got %#v, want PUBCOMP %d", p, pid)
			}
			q.n, q.stage = q.n+1, 0
		}
	}
}

// pubSTOMP sends persistent messages "<prefix>-<n>" with receipts to dest, window by window; receipted
// names go to a.
func pubSTOMP(addr, dest, prefix string, next *int, a *acked, stop <-chan struct{}) error {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	w, r := frame.NewWriter(nc), frame.NewReader(nc)
	if err := w.Write(frame.New(frame.CONNECT, frame.AcceptVersion, "1.2", frame.Host, "localhost")); err != nil {
		return err
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := r.Read(); err != nil || f == nil || f.Command != frame.CONNECTED {
		return fmt.Errorf("connected: %v %v", err, f)
	}
	const window = 32
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		for i := range window {
			name := prefix + "-" + strconv.Itoa(*next+i)
			f := frame.New(frame.SEND, frame.Destination, dest, "persistent", "true", frame.Receipt, name)
			f.Body = []byte(name)
			if err := w.Write(f); err != nil {
				return err
			}
		}
		*next += window
		for got := 0; got < window; {
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			f, err := r.Read()
			if err != nil {
				return err
			}
			if f == nil {
				continue // heart-beat
			}
			if f.Command != frame.RECEIPT {
				return fmt.Errorf("got %s: %s", f.Command, f.Header.Get("message"))
			}
			a.add(f.Header.Get(frame.ReceiptId))
			got++
		}
	}
}

// stompDurable creates the durable subscription id on topic and disconnects.
func stompDurable(addr, topic, id string) error {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	w, r := frame.NewWriter(nc), frame.NewReader(nc)
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := w.Write(frame.New(frame.CONNECT, frame.AcceptVersion, "1.2", frame.Host, "localhost")); err != nil {
		return err
	}
	if err := w.Write(frame.New(frame.SUBSCRIBE, frame.Id, id, frame.Destination, topic, "persistent", "true")); err != nil {
		return err
	}
	if err := w.Write(frame.New(frame.DISCONNECT, frame.Receipt, "bye")); err != nil {
		return err
	}
	for {
		f, err := r.Read()
		if err != nil {
			return err
		}
		if f != nil && f.Command == frame.RECEIPT {
			return nil
		}
		if f != nil && f.Command == frame.ERROR {
			return fmt.Errorf("durable subscribe: %s", f.Header.Get(frame.Message))
		}
	}
}

// drainSession connects the persistent session id, completes every delivery (PUBACK, or PUBREC then
// PUBCOMP after PUBREL) and returns how often each payload arrived, once nothing came for idle.
func drainSession(t *testing.T, addr, id string, idle time.Duration) map[string]int {
	t.Helper()
	c, present, err := mqDial(addr, id, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	if !present {
		t.Fatalf("session %q not present after the restarts", id)
	}
	got := make(map[string]int)
	for {
		p, err := c.next(idle)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		switch p := p.(type) {
		case *packet.PublishPacket:
			switch p.QoS {
			case 1:
				got[string(p.Payload)]++
				err = c.send(&packet.PubackPacket{PacketID: p.PacketID})
			case 2:
				// A DUP resend of a message whose PUBREC we sent would be the same delivery; none
				// happens here since the session was offline until now.
				got[string(p.Payload)]++
				err = c.send(&packet.PubrecPacket{PacketID: p.PacketID})
			}
		case *packet.PubrelPacket:
			err = c.send(&packet.PubcompPacket{PacketID: p.PacketID})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// drainQueue consumes a queue over STOMP (ack auto) and counts each body until nothing came for idle.
func drainQueue(t *testing.T, addr, dest string, idle time.Duration) map[string]int {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w, r := frame.NewWriter(nc), frame.NewReader(nc)
	if err := w.Write(frame.New(frame.CONNECT, frame.AcceptVersion, "1.2", frame.Host, "localhost")); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(frame.New(frame.SUBSCRIBE, frame.Id, "0", frame.Destination, dest, frame.Ack, "auto")); err != nil {
		t.Fatal(err)
	}
	got := make(map[string]int)
	for {
		_ = nc.SetReadDeadline(time.Now().Add(idle))
		f, err := r.Read()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		if f != nil && f.Command == frame.MESSAGE {
			got[string(f.Body)]++
		}
	}
}

func TestCrashKill9LosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "lyre.hcl")
	// The offline session must keep everything: max_queued_messages above what the test sends (beyond
	// it the oldest are dropped by design, acknowledged or not).
	cfg := strings.Replace(durableConfig(filepath.Join(dir, "store")), `mqtt  { queue_prefix = "queue/" }`,
		"mqtt {\n    queue_prefix = \"queue/\"\n    max_queued_messages = 1000000\n  }", 1)
	writeFile(t, cfgPath, cfg)

	// The offline session: subscribed, then gone until the end.
	b := startChild(t, cfgPath)
	sub, _, err := mqDial(b.addr, "offline", false)
	if err != nil {
		b.kill()
		t.Fatal(err)
	}
	sub.send(&packet.SubscribePacket{PacketID: 1, Subscriptions: []packet.Subscription{
		{Filter: "crash/topic", QoS: 1}, {Filter: "crash/q2", QoS: 2}}})
	if p, err := sub.next(5 * time.Second); err != nil || p.Type() != packet.Suback {
		b.kill()
		t.Fatalf("suback: %v %v", err, p)
	}
	sub.send(&packet.DisconnectPacket{})
	sub.nc.Close()
	// The durable subscription: created, then offline until the end.
	if err := stompDurable(b.addr, "/topic/crash.dsub", "dd"); err != nil {
		b.kill()
		t.Fatal(err)
	}

	var (
		topic1, queue1, stompQueue, stompTopic, stompDsub acked
		nTopic1, nQueue1, nStompQ, nStompT, nStompD       int
		q2                                                qos2Pub
	)
	const kills = 3
	for round := 0; round <= kills; round++ {
		if round > 0 {
			b = startChild(t, cfgPath)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		run := func(f func() error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = f() // a publisher ends with the broker's death
			}()
		}
		limit := 0
		if round == kills {
			limit = q2.n + 20 // the last round ends the QoS 2 stream cleanly
		}
		run(func() error { return pubMQTT1(b.addr, "pub-topic", "crash/topic", "t1", &nTopic1, &topic1, stop) })
		run(func() error { return pubMQTT1(b.addr, "pub-queue", "queue/crash", "q1", &nQueue1, &queue1, stop) })
		run(func() error { return pubSTOMP(b.addr, "/queue/crash", "sq", &nStompQ, &stompQueue, stop) })
		run(func() error { return pubSTOMP(b.addr, "/topic/crash.topic", "st", &nStompT, &stompTopic, stop) })
		run(func() error { return q2.run(b.addr, "crash/q2", stop, limit) })
		run(func() error { return pubSTOMP(b.addr, "/topic/crash.dsub", "sd", &nStompD, &stompDsub, stop) })
		time.Sleep(time.Duration(300+rand.IntN(300)) * time.Millisecond)
		if round < kills {
			b.kill() // mid-stream
			wg.Wait()
			close(stop)
			t.Logf("kill %d: acknowledged so far: %d QoS 1 to the session, %d QoS 1 to the queue, %d STOMP to the queue, %d STOMP to the session, %d QoS 2, %d STOMP to the durable subscription",
				round+1, len(topic1.names()), len(queue1.names()), len(stompQueue.names()), len(stompTopic.names()), len(q2.a.names()), len(stompDsub.names()))
			continue
		}
		close(stop)
		wg.Wait()
	}
	defer b.kill()

	session := drainSession(t, b.addr, "offline", time.Second)
	queue := drainQueue(t, b.addr, "/queue/crash", time.Second)
	dsub := drainQueue(t, b.addr, "/dsub/dd", time.Second)
	check := func(what string, a *acked, got map[string]int, exactlyOnce bool) {
		t.Helper()
		names := a.names()
		if len(names) == 0 {
			t.Errorf("%s: nothing was acknowledged; the test proves nothing", what)
		}
		missing, dups := 0, 0
		for _, n := range names {
			switch c := got[n]; {
			case c == 0:
				missing++
				if missing <= 5 {
					t.Errorf("%s: acknowledged %q never delivered", what, n)
				}
			case c > 1:
				dups++
				if exactlyOnce {
					t.Errorf("%s: %q delivered %d times, want exactly once", what, n, c)
				}
			}
		}
		if missing > 0 {
			t.Errorf("%s: %d of %d acknowledged messages lost", what, missing, len(names))
		}
		t.Logf("%s: %d acknowledged, all delivered; %d duplicates", what, len(names), dups)
	}
	check("MQTT QoS 1 to an offline session", &topic1, session, false)
	check("STOMP persistent to an offline MQTT session", &stompTopic, session, false)
	check("MQTT QoS 2 to an offline session", &q2.a, session, true)
	check("MQTT QoS 1 to a queue", &queue1, queue, false)
	check("STOMP persistent to a queue", &stompQueue, queue, false)
	check("STOMP persistent to a durable subscription", &stompDsub, dsub, false)
	// QoS 2 exactly once covers the unacknowledged too: nothing arrives twice.
	for name, c := range session {
		if strings.HasPrefix(name, "q2-") && c > 1 {
			t.Errorf("QoS 2 %q delivered %d times", name, c)
		}
	}
}
