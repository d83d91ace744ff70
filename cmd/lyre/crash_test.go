package main

// The crash test (issue 9's acceptance scenario, DESIGN.md §5): the broker runs as a child process (this
// test binary re-executed with crashChildEnv set) with the default configuration plus a store, and is
// killed with SIGKILL while publishers stream numbered messages. After the restarts every message
// acknowledged before a kill must be delivered, to an offline session too [MQTT-3.1.2-5]: at least once
// at QoS 1 (and for STOMP persistent messages), exactly once at QoS 2 [MQTT-4.3.3-2]. Streams: MQTT QoS 1 and STOMP persistent to an
// offline MQTT session, MQTT QoS 2 to it, MQTT QoS 1 and STOMP persistent to a queue, STOMP persistent
// to a durable subscription.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
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

// count returns how many distinct names were acknowledged.
func (a *acked) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.set)
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

// drainStallWait is how long a drain waits for the next message while some it expects have not come: a
// broker just restarted, or loading a window of a backlog from disk, may pause that long.
const drainStallWait = 10 * time.Second

// tally counts deliveries by payload, and tells a drain how long to wait for the next one: drainStallWait
// while some name it wants has not come, idle once all have (at once without any).
type tally struct {
	got  map[string]int
	want map[string]bool
	left int // names of want not yet delivered
}

func newTally(want []string) *tally {
	d := &tally{got: make(map[string]int), want: make(map[string]bool, len(want))}
	for _, n := range want {
		d.want[n] = true
	}
	d.left = len(d.want)
	return d
}

func (d *tally) add(name string) {
	if d.got[name] == 0 && d.want[name] {
		d.left--
	}
	d.got[name]++
}

func (d *tally) wait(idle time.Duration) time.Duration {
	if d.left > 0 {
		return max(idle, drainStallWait)
	}
	return idle
}

// drainSession connects the persistent session id, completes every delivery (PUBACK, or PUBREC then
// PUBCOMP after PUBREL) and returns how often each payload arrived, once nothing came for idle after
// every payload in want (see tally).
func drainSession(t *testing.T, addr, id string, idle time.Duration, want []string) map[string]int {
	t.Helper()
	c, present, err := mqDial(addr, id, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	if !present {
		t.Fatalf("session %q not present after the restarts", id)
	}
	got := newTally(want)
	for {
		p, err := c.next(got.wait(idle))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return got.got
		}
		if err != nil {
			t.Fatal(err)
		}
		switch p := p.(type) {
		case *packet.PublishPacket:
			switch p.QoS {
			case 1:
				got.add(string(p.Payload))
				err = c.send(&packet.PubackPacket{PacketID: p.PacketID})
			case 2:
				// A DUP resend of a message whose PUBREC we sent would be the same delivery; none
				// happens here since the session was offline until now.
				got.add(string(p.Payload))
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

// drainQueue consumes a queue over STOMP (ack auto) and counts each body, until nothing came for idle
// after every body in want (see tally).
func drainQueue(t *testing.T, addr, dest string, idle time.Duration, want []string) map[string]int {
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
	got := newTally(want)
	for {
		_ = nc.SetReadDeadline(time.Now().Add(got.wait(idle)))
		f, err := r.Read()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return got.got
		}
		if err != nil {
			t.Fatal(err)
		}
		if f != nil && f.Command == frame.MESSAGE {
			got.add(string(f.Body))
		}
	}
}

// crashPerRound is how many messages each QoS 1 / persistent stream has acknowledged in a round before
// the broker is killed (issue 9: about 5,000 per stream per round). The offline session then gets about
// twice that per round (two streams and the QoS 2 one), all of it far below the default bound of a
// durable subscription (100,000 messages / 64 MiB), and far above today's max_queued_messages (1,000).
const crashPerRound = 5000

// crashRoundLimit bounds one round's publishing: a stream that cannot reach crashPerRound within it fails
// the test rather than hang it.
const crashRoundLimit = 90 * time.Second

// crashStream is one publisher stream of the crash test and what the broker acknowledged of it.
type crashStream struct {
	what string
	pub  func(addr string, next *int, a *acked, stop <-chan struct{}) error
	next int // the next message number: numbers are never reused across rounds
	a    acked
}

func TestCrashKill9LosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "lyre.hcl")
	// The default configuration plus a store: nothing raises max_queued_messages (raising it once hid the
	// loss) or any other bound.
	writeFile(t, cfgPath, durableConfig(filepath.Join(dir, "store")))

	// The offline session: subscribed, then gone until the end.
	b := startChild(t, cfgPath)
	t.Cleanup(func() { b.kill() }) // whichever broker runs when the test ends, failed or not
	sub, _, err := mqDial(b.addr, "offline", false)
	if err != nil {
		t.Fatal(err)
	}
	sub.send(&packet.SubscribePacket{PacketID: 1, Subscriptions: []packet.Subscription{
		{Filter: "crash/topic", QoS: 1}, {Filter: "crash/q2", QoS: 2}}})
	if p, err := sub.next(5 * time.Second); err != nil || p.Type() != packet.Suback {
		t.Fatalf("suback: %v %v", err, p)
	}
	sub.send(&packet.DisconnectPacket{})
	sub.nc.Close()
	// The durable subscription: created, then offline until the end.
	if err := stompDurable(b.addr, "/topic/crash.dsub", "dd"); err != nil {
		t.Fatal(err)
	}

	mqtt1 := func(id, topic, prefix string) func(string, *int, *acked, <-chan struct{}) error {
		return func(addr string, next *int, a *acked, stop <-chan struct{}) error {
			return pubMQTT1(addr, id, topic, prefix, next, a, stop)
		}
	}
	stomp1 := func(dest, prefix string) func(string, *int, *acked, <-chan struct{}) error {
		return func(addr string, next *int, a *acked, stop <-chan struct{}) error {
			return pubSTOMP(addr, dest, prefix, next, a, stop)
		}
	}
	var (
		topic1     = &crashStream{what: "MQTT QoS 1 to an offline session", pub: mqtt1("pub-topic", "crash/topic", "t1")}
		stompTopic = &crashStream{what: "STOMP persistent to an offline MQTT session", pub: stomp1("/topic/crash.topic", "st")}
		queue1     = &crashStream{what: "MQTT QoS 1 to a queue", pub: mqtt1("pub-queue", "queue/crash", "q1")}
		stompQueue = &crashStream{what: "STOMP persistent to a queue", pub: stomp1("/queue/crash", "sq")}
		stompDsub  = &crashStream{what: "STOMP persistent to a durable subscription", pub: stomp1("/topic/crash.dsub", "sd")}
		streams    = []*crashStream{topic1, stompTopic, queue1, stompQueue, stompDsub}
		q2         qos2Pub // one message at a time: it reaches far fewer than crashPerRound
	)
	const kills = 2 // three rounds
	for round := 1; round <= kills+1; round++ {
		if round > 1 {
			b = startChild(t, cfgPath)
		}
		addr, stop, start := b.addr, make(chan struct{}), time.Now()
		var wg sync.WaitGroup
		base := make([]int, len(streams))
		ended := make([]chan error, len(streams))
		for i, s := range streams {
			base[i], ended[i] = s.a.count(), make(chan error, 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ended[i] <- s.pub(addr, &s.next, &s.a, stop) // a publisher ends with the broker's death
			}()
		}
		limit, q2base := 0, q2.a.count()
		if round == kills+1 {
			limit = q2.n + 20 // the last round ends the QoS 2 stream cleanly
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = q2.run(addr, "crash/q2", stop, limit)
		}()
		// Publish until every stream has crashPerRound acknowledged in this round; the broker is still up,
		// so a publisher that ends now has failed.
		var early error
		prototest.WaitForErr(t, crashRoundLimit, func() error {
			var lag []string
			for i, s := range streams {
				select {
				case err := <-ended[i]:
					early = fmt.Errorf("round %d: %s: publisher ended after %d acknowledged this round: %v", round, s.what, s.a.count()-base[i], err)
					return nil
				default:
				}
				if n := s.a.count() - base[i]; n < crashPerRound {
					lag = append(lag, fmt.Sprintf("%s: %d", s.what, n))
				}
			}
			if len(lag) > 0 {
				return fmt.Errorf("round %d: streams short of %d acknowledged: %s", round, crashPerRound, strings.Join(lag, "; "))
			}
			return nil
		})
		if early != nil {
			t.Fatal(early)
		}
		if round <= kills {
			b.kill() // mid-stream: every publisher is still sending
			wg.Wait()
		} else {
			close(stop)
			wg.Wait()
		}
		var counts []string
		for i, s := range streams {
			counts = append(counts, fmt.Sprintf("%s %d", s.what, s.a.count()-base[i]))
		}
		counts = append(counts, fmt.Sprintf("MQTT QoS 2 to an offline session %d", q2.a.count()-q2base))
		end := "broker killed with SIGKILL"
		if round > kills {
			end = "publishers stopped"
		}
		t.Logf("round %d (%v): acknowledged in this round: %s; %s", round, time.Since(start).Round(time.Millisecond), strings.Join(counts, ", "), end)
	}

	drainStart := time.Now()
	// Each drain ends once everything acknowledged has come and then nothing for the idle time (which
	// catches late duplicates), or once nothing came for drainStallWait.
	const idle = 300 * time.Millisecond
	session := drainSession(t, b.addr, "offline", idle, slices.Concat(topic1.a.names(), stompTopic.a.names(), q2.a.names()))
	queue := drainQueue(t, b.addr, "/queue/crash", idle, slices.Concat(queue1.a.names(), stompQueue.a.names()))
	dsub := drainQueue(t, b.addr, "/dsub/dd", idle, stompDsub.a.names())
	t.Logf("drained in %v", time.Since(drainStart).Round(time.Millisecond))
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
			return
		}
		t.Logf("%s: %d acknowledged, all delivered; %d duplicates", what, len(names), dups)
	}
	check(topic1.what, &topic1.a, session, false)
	check(stompTopic.what, &stompTopic.a, session, false)
	check("MQTT QoS 2 to an offline session", &q2.a, session, true)
	check(queue1.what, &queue1.a, queue, false)
	check(stompQueue.what, &stompQueue.a, queue, false)
	check(stompDsub.what, &stompDsub.a, dsub, false)
	// QoS 2 exactly once covers the unacknowledged too: nothing arrives twice [MQTT-4.3.3-2].
	for name, c := range session {
		if strings.HasPrefix(name, "q2-") && c > 1 {
			t.Errorf("QoS 2 %q delivered %d times", name, c)
		}
	}
}
