package main

import (
	"bufio"
	"fmt"
	"io"
	"time"
)

// Read coalescing thresholds for subscribers; see subSpec.coalesce.
const (
	coalesceBelow  = 8 << 10
	coalesceWithin = 100 * time.Microsecond
)

// packetReader cuts whole MQTT packets out of a stream. Packets are parsed in place and stay valid until the
// next call. A read error (a deadline, typically) loses nothing: bytes already read stay buffered, so next
// can be called again. The buffer grows to fit the largest packet seen, up to max.
type packetReader struct {
	rd       io.Reader
	buf      []byte
	r        int
	w        int
	max      int
	err      error // from a Read that also returned data; reported once that data is used up
	lastRead int   // bytes returned by the latest Read
	// beforeRead, when set, runs before every Read that may block: the subscriber flushes its
	// acknowledgements there, so a batch of PUBLISHes costs one write.
	beforeRead func() error
}

func newPacketReader(rd io.Reader, size, max int) *packetReader {
	return &packetReader{rd: rd, buf: make([]byte, size), max: max}
}

// next returns the next packet's first header byte and its body.
func (p *packetReader) next() (hdr byte, body []byte, err error) {
	for {
		need := 2
		if avail := p.w - p.r; avail >= 2 {
			rl, n, err := decodeVarint(p.buf[p.r+1 : p.w])
			if err != nil {
				return 0, nil, err
			}
			if n == 0 {
				need = avail + 1
			} else {
				total := 1 + n + rl
				if total > p.max {
					return 0, nil, fmt.Errorf("%w: %d bytes, limit %d", errPacketTooLarge, total, p.max)
				}
				if avail >= total {
					hdr, body = p.buf[p.r], p.buf[p.r+1+n:p.r+total]
					p.r += total
					return hdr, body, nil
				}
				need = total
			}
		}
		if err := p.fill(need); err != nil {
			return 0, nil, err
		}
	}
}

// fill makes room for need bytes from p.r on and reads once.
func (p *packetReader) fill(need int) error {
	if p.err != nil {
		err := p.err
		p.err = nil
		return err
	}
	if p.r == p.w {
		p.r, p.w = 0, 0
	}
	if p.r+need > len(p.buf) {
		if need > len(p.buf) {
			nb := make([]byte, max(need, min(2*len(p.buf), p.max)))
			copy(nb, p.buf[p.r:p.w])
			p.buf = nb
		} else {
			copy(p.buf, p.buf[p.r:p.w])
		}
		p.w -= p.r
		p.r = 0
	}
	if p.beforeRead != nil {
		if err := p.beforeRead(); err != nil {
			return err
		}
	}
	n, err := p.rd.Read(p.buf[p.w:])
	p.w += n
	p.lastRead = n
	if err != nil && n > 0 {
		p.err = err
		return nil
	}
	return err
}

// subscriberHook is a subscriber's beforeRead: it flushes the acknowledgements written since the last
// read, and with coalesce > 0 it batches reads. A small read right after another means the broker is
// writing packet by packet (mosquitto does): waiting lets the next read take a batch, instead of burning
// the CPU the broker shares with us on a read per packet or two.
func (p *packetReader) subscriberHook(bw *bufio.Writer, coalesce time.Duration) func() error {
	var lastAt time.Time
	return func() error {
		if bw.Buffered() > 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		if coalesce > 0 {
			now := time.Now()
			if p.lastRead < coalesceBelow && now.Sub(lastAt) < coalesceWithin {
				time.Sleep(coalesce)
				now = time.Now()
			}
			lastAt = now
		}
		return nil
	}
}
