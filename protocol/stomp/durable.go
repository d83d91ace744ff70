package stomp

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// errReservedDsub refuses a durable subscription name of the broker's own.
var errReservedDsub = errors.New("durable subscription names starting with $ are reserved for the broker")

// dsubDest is the durable subscription id names: what /dsub/<id> names in this grammar.
func (s *session) dsubDest(id string) (router.Destination, error) {
	prefix := strings.TrimSuffix(s.g.Render(router.Destination{Kind: router.DurableSub, Path: []string{"x"}}), "x")
	d, err := s.g.ParseName(prefix + id)
	if err == nil && d.Kind != router.DurableSub {
		err = fmt.Errorf("%w: %q is not a durable subscription name", router.ErrInvalidName, id)
	}
	if err == nil {
		err = checkDsubName(d.Path)
	}
	return d, err
}

func checkDsubName(path []string) error {
	if len(path) > 0 && strings.HasPrefix(path[0], "$") {
		return errReservedDsub
	}
	return nil
}

// durable creates, or attaches to, the durable subscription id on topic filter f (written name) and
// returns its destination. The frame's receipt waits for its record on a durable host.
func (s *session) durable(id, name string, f router.Filter) (router.Destination, error) {
	d, err := s.dsubDest(id)
	if err != nil {
		return d, &frameError{msg: "invalid durable subscription", detail: err.Error(), cause: err}
	}
	if o, exists := s.rt.Durable(d); !exists || router.FilterKey(o.Filter) != router.FilterKey(f) {
		a := s.access()
		if err := a.May(virtualhost.ActionCreate, virtualhost.ObjectDsub, d.Path, name); err != nil {
			return d, refused(err)
		}
	}
	_, err = s.rt.CreateDurable(d, router.DurableOptions{Filter: f, Owner: protocol.Owner(s.principal), QoS: 2}, s.tracker())
	if err != nil {
		return d, durableError(id, err)
	}
	return d, nil
}

// destroyDurable ends durable subscription d for good (UNSUBSCRIBE with persistent:true).
func (s *session) destroyDurable(d router.Destination, name string) error {
	if _, exists := s.rt.Durable(d); !exists {
		return nil // destroyed already: nothing to do
	}
	a := s.access()
	if err := a.May(virtualhost.ActionDestroy, virtualhost.ObjectDsub, d.Path, name); err != nil {
		return refused(err)
	}
	if _, err := s.rt.DestroyDurable(d, protocol.Owner(s.principal), s.tracker()); err != nil && !errors.Is(err, router.ErrNoDurable) {
		return durableError(name, err)
	}
	return nil
}

// durableError is the ERROR frame for a durable subscription the router refused.
func durableError(name string, err error) error {
	switch {
	case errors.Is(err, router.ErrNotOwner):
		return &frameError{msg: "access refused", detail: fmt.Sprintf("durable subscription %q belongs to another user", name), cause: ErrAccessRefused}
	case errors.Is(err, router.ErrNoDurable):
		return protoErr("unknown durable subscription", "%q names no durable subscription; create one with a persistent SUBSCRIBE to a topic", name)
	case errors.Is(err, router.ErrTooManyDurables):
		return &frameError{msg: "too many durable subscriptions", detail: fmt.Sprintf("%s: the virtual host holds as many durable subscriptions as it may (max_durable_subscriptions)", name), cause: err}
	}
	return subscribeError(name, err)
}

// literalFilter is the filter naming exactly destination d.
func literalFilter(d router.Destination) router.Filter {
	segs := make([]router.Seg, len(d.Path))
	for i, p := range d.Path {
		segs[i] = router.Seg{Kind: router.SegLiteral, Text: p}
	}
	return router.Filter{Kind: d.Kind, Segs: segs}
}
