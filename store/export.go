package store

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ExportFormat names the export stream in its header line.
const ExportFormat = "lyre-store-export"

// exportHeader is the first line of an export stream.
type exportHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// exportRecord is every other line: exactly one field is set. Messages travel inside each reference
// (JSON encodes bodies as base64); Import stores a message referenced many times once, by its ID.
type exportRecord struct {
	Queue      *Queue      `json:"queue,omitempty"`
	DurableSub *DurableSub `json:"dsub,omitempty"`
	Session    *Session    `json:"session,omitempty"`
	Entry      *Entry      `json:"entry,omitempty"`
	Inflight   *Inflight   `json:"inflight,omitempty"`
	Inbound    *inbound    `json:"inbound,omitempty"`
	Retained   *Retained   `json:"retained,omitempty"`
}

type inbound struct {
	ClientID string
	PacketID uint16
}

// exportWindow is how many entries Export reads at a time, so a large backlog streams through.
const exportWindow = 1000

// Export writes everything s holds to w as line-delimited JSON: a header line
// {"format":"lyre-store-export","version":1}, then one record per line (queues, durable subscriptions,
// sessions with their in-flight and inbound state, list entries, retained messages). The stream is
// independent of the on-disk format, for backups and upgrades. Run it on a store no broker is writing to.
func Export(s Store, w io.Writer) (Counts, error) {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(exportHeader{Format: ExportFormat, Version: FormatVersion}); err != nil {
		return Counts{}, err
	}
	type list struct {
		l     List
		owner string
	}
	var lists []list
	var sessions []SessionState
	c, err := s.Recover(Visitor{
		Queue: func(q Queue, li ListInfo) error {
			if li.Count > 0 {
				lists = append(lists, list{ListQueue, q.Name})
			}
			return enc.Encode(exportRecord{Queue: &q})
		},
		DurableSub: func(d DurableSub, li ListInfo) error {
			if li.Count > 0 {
				lists = append(lists, list{ListDurableSub, d.ID})
			}
			return enc.Encode(exportRecord{DurableSub: &d})
		},
		Session: func(ss SessionState) error {
			sessions = append(sessions, ss)
			return nil
		},
		Retained: func(r Retained) error { return enc.Encode(exportRecord{Retained: &r}) },
	})
	if err != nil {
		return c, fmt.Errorf("store: export: %w", err)
	}
	for _, ss := range sessions {
		if err := enc.Encode(exportRecord{Session: &ss.Session}); err != nil {
			return c, err
		}
		for i := range ss.Inflight {
			if err := enc.Encode(exportRecord{Inflight: &ss.Inflight[i]}); err != nil {
				return c, err
			}
		}
		for _, id := range ss.Inbound {
			if err := enc.Encode(exportRecord{Inbound: &inbound{ClientID: ss.Session.ClientID, PacketID: id}}); err != nil {
				return c, err
			}
		}
	}
	for _, li := range lists {
		for from := uint64(0); ; {
			entries, err := s.Entries(li.l, li.owner, from, exportWindow)
			if err != nil {
				return c, fmt.Errorf("store: export %s %q: %w", li.l, li.owner, err)
			}
			for i := range entries {
				if err := enc.Encode(exportRecord{Entry: &entries[i]}); err != nil {
					return c, err
				}
			}
			if len(entries) < exportWindow {
				break
			}
			from = entries[len(entries)-1].Seq + 1
		}
	}
	return c, bw.Flush()
}

// importChunk is how many ops Import commits at a time.
const importChunk = 512

// Import reads an Export stream into s, committing as it goes, and returns how many records it read.
// It merges into what s holds; start from an empty store for a faithful copy.
func Import(r io.Reader, s Store) (int, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	var h exportHeader
	if err := dec.Decode(&h); err != nil {
		return 0, fmt.Errorf("store: import: header: %w", err)
	}
	if h.Format != ExportFormat || h.Version != FormatVersion {
		return 0, fmt.Errorf("%w: import stream %q version %d (this build reads %s version %d)",
			ErrVersion, h.Format, h.Version, ExportFormat, FormatVersion)
	}
	var ops []Op
	n := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		err := Apply(s, ops...)
		ops = ops[:0]
		return err
	}
	for {
		var rec exportRecord
		err := dec.Decode(&rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("store: import: record %d: %w", n+1, err)
		}
		n++
		var op Op
		switch {
		case rec.Queue != nil:
			op = PutQueue{Queue: *rec.Queue}
		case rec.DurableSub != nil:
			op = PutDurableSub{Sub: *rec.DurableSub}
		case rec.Session != nil:
			op = PutSession{Session: *rec.Session}
		case rec.Entry != nil:
			op = PutEntry{Entry: *rec.Entry}
		case rec.Inflight != nil:
			op = PutInflight{Inflight: *rec.Inflight}
		case rec.Inbound != nil:
			op = PutInbound{ClientID: rec.Inbound.ClientID, PacketID: rec.Inbound.PacketID}
		case rec.Retained != nil:
			op = PutRetained{Retained: *rec.Retained}
		default:
			return n, fmt.Errorf("store: import: record %d: empty", n)
		}
		if err := Validate(op); err != nil {
			return n, fmt.Errorf("store: import: record %d: %w", n, err)
		}
		ops = append(ops, op)
		if len(ops) >= importChunk {
			if err := flush(); err != nil {
				return n, fmt.Errorf("store: import: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return n, fmt.Errorf("store: import: %w", err)
	}
	return n, nil
}
