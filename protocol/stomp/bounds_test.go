package stomp

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/conf"
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
