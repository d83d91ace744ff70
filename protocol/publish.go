package protocol

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/lyremq/lyre/router"
)

// What every publisher that names its message headers shares: STOMP SEND frames and HTTP publishes
// (protocol/management, whose X-Lyre-<Name> request headers are headers named <name>). The broker
// interprets some names (expires, ttl, priority) the same way for both, and keeps for itself the names it
// sets on delivered messages (ReservedHeader). MQTT 5 carries the same things as properties.

// HeaderError is a message header whose value the broker cannot take.
type HeaderError struct {
	Name   string // the header's name
	Detail string // what is wrong with it
}

func (e *HeaderError) Error() string { return "invalid " + e.Name + " header: " + e.Detail }

// ReservedHeader reports header names the broker sets itself on delivered messages (STOMP MESSAGE frames)
// or interprets when a message is published: they never travel as application headers.
func ReservedHeader(name string) bool {
	switch name {
	case "destination", "content-length", "content-type", "receipt", "transaction", "message-id",
		"subscription", "ack", "persistent", "expires", "redelivered":
		return true
	}
	return false
}

// ParseExpires reads a published message's expiry from its expires header (Unix milliseconds; "" or "0"
// is never) and its ttl header (Apollo's: milliseconds from now; "" is none). With both, the earlier
// wins. It returns Unix milliseconds, 0 for never, or a *HeaderError.
func ParseExpires(expires, ttl string, now time.Time) (int64, error) {
	var at int64
	if expires != "" && expires != "0" {
		n, err := strconv.ParseInt(expires, 10, 64)
		if err != nil || n < 0 {
			return 0, &HeaderError{"expires", fmt.Sprintf("expires must be Unix milliseconds, got %q", expires)}
		}
		at = n
	}
	if ttl != "" {
		n, err := strconv.ParseInt(ttl, 10, 64)
		if err != nil || n <= 0 {
			return 0, &HeaderError{"ttl", fmt.Sprintf("ttl must be a positive number of milliseconds, got %q", ttl)}
		}
		if e := now.UnixMilli() + n; at == 0 || e < at {
			at = e
		}
	}
	return at, nil
}

// ParsePriority reads a priority header: 0 to 9, more counts as router.MaxPriority; "" is 0.
func ParsePriority(p string) (uint8, error) {
	if p == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 {
		return 0, &HeaderError{"priority", fmt.Sprintf("priority must be an integer from 0 to 9, got %q", p)}
	}
	return uint8(min(n, router.MaxPriority)), nil
}

// RetryFull is what a publisher held back by a full queue does (DESIGN.md §5): after Publish refused m
// with router.ErrQueueFull (res), it waits for room (router.WaitRoom) and publishes m again, until it is
// taken or ctx ends; then it returns the last result, res's refusal when ctx ended first. Any other
// result is returned as it is. Under drop_head and drop_tail the router makes room or drops the message
// itself, so only a queue whose full policy is block refuses.
func RetryFull(ctx context.Context, rt *router.Router, m *router.Message, res router.PublishResult) router.PublishResult {
	for errors.Is(res.Err, router.ErrQueueFull) {
		if rt.WaitRoom(ctx, m) != nil {
			return res
		}
		res = rt.Publish(m)
	}
	return res
}
