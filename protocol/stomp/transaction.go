package stomp

import "github.com/go-stomp/stomp/v3/frame"

// transaction buffers the SEND, ACK and NACK frames of one BEGIN..COMMIT.
type transaction struct {
	frames []*frame.Frame
	bytes  int64
}

// begin starts a transaction (STOMP 1.2 "BEGIN").
func (s *session) begin(f *frame.Frame) error {
	tx, ok := f.Header.Contains(frame.Transaction)
	if !ok || tx == "" {
		return protoErr("missing transaction", "BEGIN requires a transaction header")
	}
	if _, dup := s.txs[tx]; dup {
		return protoErr("duplicate transaction", "transaction %q is already open", tx)
	}
	if len(s.txs) >= MaxTransactions {
		return protoErr("too many transactions", "a session may have at most %d open transactions", MaxTransactions)
	}
	if s.txs == nil {
		s.txs = make(map[string]*transaction)
	}
	s.txs[tx] = &transaction{}
	return nil
}

// buffer adds a SEND, ACK or NACK to an open transaction.
func (s *session) buffer(tx string, f *frame.Frame) error {
	t := s.txs[tx]
	if t == nil {
		return protoErr("unknown transaction", "transaction %q is not open", tx)
	}
	if len(t.frames) >= MaxTransactionFrames {
		return protoErr("transaction too large", "a transaction may hold at most %d frames", MaxTransactionFrames)
	}
	if t.bytes+int64(len(f.Body)) > s.cfg.MaxMessageLength {
		return protoErr("transaction too large", "the bodies in a transaction may total at most %d bytes", s.cfg.MaxMessageLength)
	}
	t.bytes += int64(len(f.Body))
	t.frames = append(t.frames, f)
	return nil
}

// commit runs a transaction's frames in order (STOMP 1.2 "COMMIT").
func (s *session) commit(f *frame.Frame) error {
	tx := f.Header.Get(frame.Transaction)
	t := s.txs[tx]
	if t == nil {
		return protoErr("unknown transaction", "transaction %q is not open", tx)
	}
	delete(s.txs, tx)
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
	if s.txs[tx] == nil {
		return protoErr("unknown transaction", "transaction %q is not open", tx)
	}
	delete(s.txs, tx)
	return nil
}
