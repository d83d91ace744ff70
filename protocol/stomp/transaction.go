package stomp

import "github.com/go-stomp/stomp/v3/frame"

// transaction buffers the SEND, ACK and NACK frames of one BEGIN..COMMIT.
type transaction struct {
	frames []*frame.Frame
	bytes  int64 // frameSize of the frames, counted in session.txBytes too
}

// begin starts a transaction (STOMP 1.2 "BEGIN"): at most max_transactions per connection.
func (s *session) begin(f *frame.Frame) error {
	tx, ok := f.Header.Contains(frame.Transaction)
	if !ok || tx == "" {
		return protoErr("missing transaction", "BEGIN requires a transaction header")
	}
	if _, dup := s.txs[tx]; dup {
		return protoErr("duplicate transaction", "transaction %q is already open", tx)
	}
	if len(s.txs) >= s.cfg.MaxTransactions {
		return protoErr("too many transactions", "a connection may have at most %d open transactions (max_transactions)", s.cfg.MaxTransactions)
	}
	if s.txs == nil {
		s.txs = make(map[string]*transaction)
	}
	s.txs[tx] = &transaction{}
	return nil
}

// buffer adds a SEND, ACK or NACK to an open transaction. What all the connection's transactions hold
// together is bounded in frames (max_transaction_frames) and bytes (max_transaction_bytes, headers
// included: a frame of empty body and a thousand long headers is not free). A SEND is checked as it
// would be if it were sent now, access rules included, so a transaction never holds what the client
// could not send and a COMMIT does not fail halfway for a reason known at the SEND.
func (s *session) buffer(tx string, f *frame.Frame) error {
	t := s.txs[tx]
	if t == nil {
		return protoErr("unknown transaction", "transaction %q is not open", tx)
	}
	if s.txFrames >= s.cfg.MaxTransactionFrames {
		return protoErr("transaction too large", "a connection's open transactions may hold at most %d frames (max_transaction_frames)", s.cfg.MaxTransactionFrames)
	}
	n := frameSize(f)
	if s.txBytes+n > s.cfg.MaxTransactionBytes {
		return protoErr("transaction too large", "a connection's open transactions may hold at most %d bytes of frames, headers included (max_transaction_bytes)", s.cfg.MaxTransactionBytes)
	}
	if f.Command == frame.SEND {
		if err := s.checkSend(f); err != nil {
			return err
		}
	}
	t.frames = append(t.frames, f)
	t.bytes += n
	s.txFrames++
	s.txBytes += n
	return nil
}

// frameSize is about what f took on the wire: command, header lines and body.
func frameSize(f *frame.Frame) int64 {
	n := len(f.Command) + 1 + len(f.Body) + 1
	for i := 0; i < f.Header.Len(); i++ {
		k, v := f.Header.GetAt(i)
		n += len(k) + len(v) + 2
	}
	return int64(n)
}

// end closes transaction tx, releasing what it held from the connection's bounds.
func (s *session) end(tx string) *transaction {
	t := s.txs[tx]
	if t != nil {
		delete(s.txs, tx)
		s.txFrames -= len(t.frames)
		s.txBytes -= t.bytes
	}
	return t
}

// commit runs a transaction's frames in order (STOMP 1.2 "COMMIT").
func (s *session) commit(f *frame.Frame) error {
	tx := f.Header.Get(frame.Transaction)
	t := s.end(tx)
	if t == nil {
		return protoErr("unknown transaction", "transaction %q is not open", tx)
	}
	for _, bf := range t.frames {
		if err := s.exec(bf); err != nil {
			return err
		}
	}
	return nil
}

// abort discards a transaction (STOMP 1.2 "ABORT"): its messages are not sent and its acknowledgements
// are not applied.
func (s *session) abort(f *frame.Frame) error {
	tx := f.Header.Get(frame.Transaction)
	if s.end(tx) == nil {
		return protoErr("unknown transaction", "transaction %q is not open", tx)
	}
	return nil
}
