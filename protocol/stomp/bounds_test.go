package stomp

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/virtualhost"
)

// Tests of the per-client bounds (issue 13, "Bounded resources per client").

// stompErrMessage returns the message header of the ERROR frame a go-stomp call failed with, or "".
func stompErrMessage(err error) string {
	var se stomp.Error
	if errors.As(err, &se) && se.Frame != nil {
		return se.Frame.Header.Get(frame.Message)
	}
	var sp *stomp.Error
	if errors.As(err, &sp) && sp.Frame != nil {
		return sp.Frame.Header.Get(frame.Message)
	}
	return ""
}

// TestTransactionBoundsPerConnection: what a connection's open transactions buffer is bounded in
// frames and in bytes, header bytes included, across all of them, not per transaction and bodies only.
func TestTransactionBoundsPerConnection(t *testing.T) {
	b := startBroker(t, nil) // max_message_length 1 MiB: the default max_transaction_bytes
	t.Run("header bytes", func(t *testing.T) {
		c := b.dial(t)
		tx := c.Begin()
		value := strings.Repeat("h", 900)
		opts := []func(*frame.Frame) error{stomp.SendOpt.Receipt}
		for i := range 40 {
			opts = append(opts, stomp.SendOpt.Header("x-"+strconv.Itoa(i), value))
		}
		// 40 headers of 900 bytes: about 36 KiB a frame without any body, so 1 MiB after 30 frames.
		for i := range 100 {
			err := tx.Send("/queue/tx-headers", "", nil, opts...)
			if err == nil {
				continue
			}
			if msg := stompErrMessage(err); msg != "transaction too large" {
				t.Fatalf("frame %d: %v (message %q), want ERROR transaction too large", i, err, msg)
			}
			if i < 25 {
				t.Fatalf("refused after %d frames, below max_transaction_bytes", i)
			}
			return
		}
		t.Fatal("100 frames of 36 KiB of headers were buffered in one transaction (max_transaction_bytes 1 MiB)")
	})
	t.Run("bodies across transactions", func(t *testing.T) {
		c := b.dial(t)
		body := make([]byte, 600<<10)
		for i, tx := range []*stomp.Transaction{c.Begin(), c.Begin()} {
			err := tx.Send("/queue/tx-bodies", "", body, stomp.SendOpt.Receipt)
			switch {
			case i == 0 && err != nil:
				t.Fatalf("first transaction: %v", err)
			case i == 1 && err == nil:
				t.Fatal("two transactions hold 1.2 MiB of bodies (max_transaction_bytes 1 MiB)")
			case i == 1 && stompErrMessage(err) != "transaction too large":
				t.Fatalf("second transaction: %v, want ERROR transaction too large", err)
			}
		}
	})
	t.Run("frames across transactions", func(t *testing.T) {
		// Raw frames, written at once: DefaultMaxTransactionFrames+1 small SENDs over two transactions,
		// the last one asking for a receipt.
		var sb strings.Builder
		n := conf.DefaultMaxTransactionFrames / 2
		for _, tx := range []string{"t1", "t2"} {
			sb.WriteString("BEGIN\ntransaction:" + tx + "\n\n\x00")
			for range n {
				sb.WriteString("SEND\ndestination:/queue/tx-frames\ntransaction:" + tx + "\n\n\x00")
			}
		}
		sb.WriteString("SEND\ndestination:/queue/tx-frames\ntransaction:t2\nreceipt:last\n\n\x00")
		r := b.raw(t)
		if f := r.connect("accept-version:1.2", "host:default"); f.Command != frame.CONNECTED {
			t.Fatalf("CONNECT: %s", f.Command)
		}
		go r.nc.Write([]byte(sb.String())) //nolint:errcheck // the reader below reports what happened
		f := r.expectError("transaction too large")
		if id := f.Header.Get(frame.ReceiptId); id != "last" {
			t.Fatalf("ERROR for receipt %q, want the frame past max_transaction_frames", id)
		}
	})
	t.Run("open transactions", func(t *testing.T) {
		r := b.raw(t)
		if f := r.connect("accept-version:1.2", "host:default"); f.Command != frame.CONNECTED {
			t.Fatalf("CONNECT: %s", f.Command)
		}
		var sb strings.Builder
		for i := range conf.DefaultMaxTransactions {
			sb.WriteString("BEGIN\ntransaction:t" + strconv.Itoa(i) + "\n\n\x00")
		}
		sb.WriteString("BEGIN\ntransaction:one-more\nreceipt:last\n\n\x00")
		r.send(sb.String())
		r.expectError("too many transactions")
	})
}

// TestTransactionSendAuthorizedWhenBuffered: a SEND the client may not make is refused when it enters
// the transaction, not only at COMMIT, so a transaction never holds what could not be sent.
func TestTransactionSendAuthorizedWhenBuffered(t *testing.T) {
	b := startBroker(t, nil)
	hc := b.host.Config()
	hc.AccessRules = []conf.AccessRule{
		{Allow: []string{"*"}, Actions: []string{"connect"}},
		{Allow: []string{"*"}, Actions: []string{"send"}, Kind: "queue", ID: "open.**"},
	}
	if err := b.host.Update(hc); err != nil {
		t.Fatal(err)
	}
	c := b.dial(t)
	tx := c.Begin()
	if err := tx.Send("/queue/open.a", "", []byte("ok"), stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("allowed SEND in a transaction: %v", err)
	}
	err := tx.Send("/queue/secret", "", []byte("no"), stomp.SendOpt.Receipt)
	if msg := stompErrMessage(err); msg != "access refused" {
		t.Fatalf("forbidden SEND in a transaction: %v (message %q), want ERROR access refused", err, msg)
	}
}

// likeBacktrack is the greedy two-pointer wildcard matcher the selector used before: correct, and the
// reference the linear matcher is checked against (FuzzLike), but O(len(pattern) × len(value)).
func likeBacktrack(pat []likeTok, s string) bool {
	pi, si := 0, 0
	starPi, starSi := -1, 0
	for si < len(s) {
		r, size := utf8.DecodeRuneInString(s[si:])
		if pi < len(pat) {
			switch t := pat[pi]; {
			case t.kind == 2:
				starPi, starSi = pi, si
				pi++
				continue
			case t.kind == 1 || t.r == r:
				pi++
				si += size
				continue
			}
		}
		if starPi < 0 {
			return false
		}
		_, size = utf8.DecodeRuneInString(s[starSi:])
		starSi += size
		si = starSi
		pi = starPi + 1
	}
	for pi < len(pat) && pat[pi].kind == 2 {
		pi++
	}
	return pi == len(pat)
}

// pathologicalLIKE are patterns on which a backtracking matcher retries a long literal at every
// position of a long value of 'a's: '%a…ab%' and the '%a…a%b'.
func pathologicalLIKE(k int) []string {
	a := strings.Repeat("a", k)
	return []string{"%" + a + "b%", "%" + a + "%b", "%" + a + "_b%", "%a_" + a + "%"}
}

// TestSelectorLIKELinear: LIKE takes time linear in the value, whatever the pattern: 256 KiB of 'a's
// against patterns holding 1000 of them take a scan, not 1000 scans.
func TestSelectorLIKELinear(t *testing.T) {
	value := strings.Repeat("a", 256<<10)
	m := msgWith("h", value)
	for _, pat := range pathologicalLIKE(1000) {
		s, err := parseSelector("h LIKE '" + pat + "'")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		got := s.matches(m)
		// A backtracking matcher takes seconds here (4 to 13 s measured); a linear one milliseconds, or a
		// few hundred under the race detector on a loaded machine for the '_' patterns (16 words a rune).
		if el := time.Since(start); el > time.Second {
			t.Errorf("%.12q…: %v for a 256 KiB value", pat, el)
		}
		if got, want := s.matches(msgWith("h", "aab")), likeBacktrack(compileLike(pat, -1), "aab"); got != want {
			t.Errorf("%.12q… on \"aab\": got %v, want %v", pat, got, want)
		}
		if want := !strings.Contains(pat, "b"); got != want {
			t.Errorf("%.12q… matched %v", pat, got)
		}
	}
}

// TestSelectorCostBounded: a selector's cost per message is bounded by its size, so a short selector
// cannot make each message cost a publisher seconds: BETWEEN evaluates its operand once, however deeply
// nested.
func TestSelectorCostBounded(t *testing.T) {
	src := "a"
	for range 40 {
		src = "(" + src + " BETWEEN 0 AND 1)"
	}
	s, err := parseSelector(src)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan bool, 1)
	go func() { done <- s.matches(msgWith("a", "1")) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatalf("%d-byte selector still evaluating one message after 2s", len(src))
	}
}

// TestSUBSCRIBE_SelectorBounded: a selector longer than max_selector_length is refused at SUBSCRIBE.
func TestSUBSCRIBE_SelectorBounded(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector, _ *Handler) { c.STOMP.MaxHeaderLength = 64 << 10 })
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	sel := "h = 'x'" + strings.Repeat(" OR h = 'x'", 1000) // 11 KB, over the 4 KiB default
	r.send("SUBSCRIBE\nid:1\ndestination:/topic/sel\nselector:" + sel + "\n\n\x00")
	f := r.expectError("invalid selector")
	if !strings.Contains(string(f.Body), "max_selector_length") {
		t.Fatalf("ERROR body %q, want it to name max_selector_length", f.Body)
	}
}

// TestSUBSCRIBE_CompositeDeduplicated: a composite SUBSCRIBE naming one destination many times makes one
// route, so each message is delivered once, not once per repetition.
func TestSUBSCRIBE_CompositeDeduplicated(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector, _ *Handler) { c.STOMP.MaxHeaderLength = 64 << 10 })
	c := b.dial(t)
	dest := strings.Repeat("/topic/dup,", 500) + "/topic/dup"
	sub := subscribe(t, c, dest, stomp.AckAuto)
	if n := b.host.Router.Stats().Subscriptions; n != 1 {
		t.Errorf("%d router subscriptions for one destination named 501 times", n)
	}
	pub := b.dial(t)
	if err := pub.Send("/topic/dup", "", []byte("once"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	recv(t, sub)
	expectNone(t, sub, 100*time.Millisecond)
}

// FuzzLike checks the linear LIKE matcher against the backtracking one.
func FuzzLike(f *testing.F) {
	for _, c := range [][2]string{
		{"%a%b", "xaxb"}, {"a_c", "abc"}, {"%_b%", "ab"}, {"%", ""}, {"", ""}, {"_", "é"}, {"%é_", "aéb"},
		{"a%", "\xffa"}, {"%\uFFFD", "a\xff"}, {"_%_", "\xe2\x82"}, {"%ab_a%", "abab_abaa"}, {"%%a%%", "ba"},
		{"%a_b%c", "a_bxxaxbc"}, {"\\%_", "%x"}, {"%aa_", "aaaa"},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, pat, v string) {
		toks := compileLike(pat, '\\')
		p, ok := newLikePattern(toks)
		if !ok {
			return
		}
		if got, want := p.match(v), likeBacktrack(toks, v); got != want {
			t.Fatalf("LIKE %q on %q: got %v, want %v", pat, v, got, want)
		}
	})
}

// BenchmarkSelectorLIKE evaluates LIKE patterns that make a backtracking matcher quadratic on values of
// growing length: ns/op grows with the value, linearly.
func BenchmarkSelectorLIKE(b *testing.B) {
	for _, n := range []int{1 << 10, 16 << 10, 256 << 10} {
		m := msgWith("h", strings.Repeat("a", n))
		for i, pat := range pathologicalLIKE(500) {
			s, err := parseSelector("h LIKE '" + pat + "'")
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("pattern%d/value=%dKiB", i, n>>10), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(n))
				for b.Loop() {
					s.matches(m)
				}
			})
		}
	}
}

// TestLikeMatchesBacktracking compares the two matchers on random short patterns and values over an
// alphabet of wildcards, escapes, multi-byte runes and invalid UTF-8.
func TestLikeMatchesBacktracking(t *testing.T) {
	alpha := []string{"a", "b", "%", "_", "\\", "é", "\uFFFD", "\xff", "\xe2", "\x82"}
	r := rand.New(rand.NewPCG(13, 9))
	gen := func() string {
		var sb strings.Builder
		for range r.IntN(10) {
			sb.WriteString(alpha[r.IntN(len(alpha))])
		}
		return sb.String()
	}
	for range 20000 {
		pat, v := gen(), gen()
		toks := compileLike(pat, '\\')
		p, ok := newLikePattern(toks)
		if !ok {
			t.Fatalf("%q refused", pat)
		}
		if got, want := p.match(v), likeBacktrack(toks, v); got != want {
			t.Fatalf("LIKE %q on %q: got %v, want %v", pat, v, got, want)
		}
	}
}

// TestSUBSCRIBE_BoundedPerConnection: with the default max_subscriptions a connection holds 1000
// destinations; one more, alone or in a composite SUBSCRIBE, is an ERROR.
func TestSUBSCRIBE_BoundedPerConnection(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector, _ *Handler) { c.STOMP.MaxHeaderLength = 64 << 10 })
	t.Run("one by one", func(t *testing.T) {
		r := b.raw(t)
		r.connect("accept-version:1.2", "host:default")
		var sb strings.Builder
		for i := range conf.DefaultMaxSubscriptions {
			sb.WriteString("SUBSCRIBE\nid:" + strconv.Itoa(i) + "\ndestination:/topic/many." + strconv.Itoa(i) + "\n\n\x00")
		}
		sb.WriteString("SUBSCRIBE\nid:last\ndestination:/topic/many.last\nreceipt:last\n\n\x00")
		r.send(sb.String())
		f := r.expectError("too many subscriptions")
		if !strings.Contains(string(f.Body), "max_subscriptions") {
			t.Fatalf("ERROR body %q, want it to name max_subscriptions", f.Body)
		}
	})
	t.Run("composite", func(t *testing.T) {
		r := b.raw(t)
		r.connect("accept-version:1.2", "host:default")
		names := make([]string, conf.DefaultMaxSubscriptions+1)
		for i := range names {
			names[i] = "/topic/c." + strconv.Itoa(i)
		}
		r.send("SUBSCRIBE\nid:1\ndestination:" + strings.Join(names, ",") + "\n\n\x00")
		r.expectError("too many subscriptions")
		prototest.WaitFor(t, 2*time.Second, func() bool { return b.host.Router.Stats().Subscriptions == 0 })
	})
}

// TestSUBSCRIBE_BoundedPerHost: a virtual host's max_subscriptions bounds what all its clients hold
// together, and its max_durable_subscriptions its durable subscriptions; another host has its own.
func TestSUBSCRIBE_BoundedPerHost(t *testing.T) {
	b := startBroker(t, nil)
	hc := b.host.Config()
	hc.MaxSubscriptions, hc.MaxDurableSubscriptions = 3, 1
	if err := b.host.Update(hc); err != nil {
		t.Fatal(err)
	}
	c1, c2 := b.dial(t), b.dial(t)
	s1 := subscribe(t, c1, "/topic/h.1,/topic/h.2", stomp.AckAuto)
	subscribe(t, c2, "/queue/h.3", stomp.AckAuto)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SUBSCRIBE\nid:1\ndestination:/topic/h.4\n\n\x00")
	f := r.expectError("too many subscriptions")
	if !strings.Contains(string(f.Body), "max_subscriptions") {
		t.Fatalf("ERROR body %q, want it to name max_subscriptions", f.Body)
	}
	// The other host is not bounded by this one's.
	o := b.dial(t, stomp.ConnOpt.Host("other"))
	subscribe(t, o, "/topic/o.1,/topic/o.2,/topic/o.3,/topic/o.4", stomp.AckAuto)

	unsubscribe(t, s1) // room for two more
	subscribe(t, c2, "/topic/d.1", stomp.AckClientIndividual, stomp.SubscribeOpt.Id("d1"), stomp.SubscribeOpt.Header("persistent", "true"))
	r = b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SUBSCRIBE\nid:d2\npersistent:true\ndestination:/topic/d.2\n\n\x00")
	f = r.expectError("too many durable subscriptions")
	if !strings.Contains(string(f.Body), "max_durable_subscriptions") {
		t.Fatalf("ERROR body %q, want it to name max_durable_subscriptions", f.Body)
	}
}

// TestContentLengthAllocatedAsBytesArrive: a SEND announcing a large content-length and then stalling
// costs the broker the bytes that arrived, not the announced length: the body buffer grows with them.
func TestContentLengthAllocatedAsBytesArrive(t *testing.T) {
	b := startBroker(t, nil) // max_message_length 1 MiB
	const conns = 16
	rs := make([]*rawConn, conns)
	for i := range rs {
		rs[i] = b.raw(t)
		rs[i].connect("accept-version:1.2", "host:default")
	}
	heap0, _ := prototest.MemInUse()
	for _, r := range rs {
		r.send("SEND\ndestination:/queue/stall\ncontent-length:1048576\n\nonly a few bytes")
	}
	time.Sleep(500 * time.Millisecond) // the readers have the headers, and wait for the body
	heap1, _ := prototest.MemInUse()
	if grown := heap1 - heap0; grown > conns*256<<10 {
		t.Fatalf("%d stalled SENDs announcing 1 MiB each hold %d KiB", conns, grown>>10)
	}
	// The body still arrives whole.
	r := rs[0]
	r.send(strings.Repeat("x", 1048576-len("only a few bytes")) + "\x00")
	r.send("SUBSCRIBE\nid:1\ndestination:/queue/stall\n\n\x00")
	if f := r.read(); f.Command != frame.MESSAGE || len(f.Body) != 1048576 || !strings.HasPrefix(string(f.Body), "only a few") {
		t.Fatalf("got %s of %d bytes", f.Command, len(f.Body))
	}
}

// BenchmarkReadSend reads SEND frames with a content-length body of several sizes: the body buffer
// is allocated once at its size up to 64 KiB, and grows with the bytes beyond.
func BenchmarkReadSend(b *testing.B) {
	for _, n := range []int{100, 64 << 10, 1 << 20} {
		raw := []byte("SEND\ndestination:/queue/a\ncontent-length:" + strconv.Itoa(n) + "\n\n" + strings.Repeat("x", n) + "\x00")
		b.Run(fmt.Sprintf("body=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			src := bytes.NewReader(raw)
			rd := NewReader(src, Limits{MaxBodyLength: 2 << 20})
			for b.Loop() {
				src.Reset(raw)
				if _, err := rd.Read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// usersHost gives b's default host a users file with alice ("wonderland") and turns anonymous access
// off.
func usersHost(t *testing.T, b *broker) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "users.hcl")
	if err := os.WriteFile(path, []byte(conf.User{Name: "alice", PasswordHash: string(hash)}.Format()), 0o600); err != nil {
		t.Fatal(err)
	}
	hc := b.host.Config()
	hc.UsersFile, hc.Anonymous = path, false
	if err := b.host.Update(hc); err != nil {
		t.Fatal(err)
	}
}

// TestLoginDelayUnskippable: the delay a failed login earns is its address's, not its connection's: a
// client that closes at once after a wrong password and tries again from the same address waits it out
// all the same.
func TestLoginDelayUnskippable(t *testing.T) {
	b := startBroker(t, nil)
	usersHost(t, b)
	const delay = time.Second
	b.host.Throttle = &virtualhost.Throttle{Free: 1, Base: delay, Max: delay}
	wrong := "CONNECT\naccept-version:1.2\nhost:default\nlogin:alice\npasscode:nope\n\n\x00"
	r := b.raw(t)
	r.send(wrong)
	r.expectError("access refused") // the free failure
	r = b.raw(t)
	r.send(wrong) // earns the delay, and leaves without waiting for the answer
	r.nc.Close()
	prototest.WaitFor(t, 2*time.Second, func() bool { return b.host.Throttle.Failures("127.0.0.1") == 2 })
	start := time.Now()
	r = b.raw(t)
	if f := r.connect("accept-version:1.2", "host:default", "login:alice", "passcode:wonderland"); f.Command != frame.CONNECTED {
		t.Fatalf("right password: %s %q", f.Command, f.Header.Get(frame.Message))
	}
	if el := time.Since(start); el < delay/2 {
		t.Fatalf("the next login from the address was answered after %v: the delay was skipped", el)
	}
}

// TestSEND_CompositeDeduplicated: a composite SEND naming one destination many times sends the message
// there once.
func TestSEND_CompositeDeduplicated(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector, _ *Handler) { c.STOMP.MaxHeaderLength = 64 << 10 })
	c := b.dial(t)
	sub := subscribe(t, c, "/queue/dup", stomp.AckAuto)
	pub := b.dial(t)
	if err := pub.Send(strings.Repeat("/queue/dup,", 500)+"/queue/dup", "", []byte("once"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	recv(t, sub)
	expectNone(t, sub, 100*time.Millisecond)
}
