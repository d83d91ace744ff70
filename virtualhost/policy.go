package virtualhost

import (
	"fmt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
)

// routerOptions derives the router options of host c from its configuration, on top of o: the host's
// queue and topic policies, in configuration order (the router applies the first match). A policy whose
// pattern does not parse is left out; conf validation reports it.
func routerOptions(c conf.VirtualHost, o router.Options) router.Options {
	qs, ts, _ := policies(c)
	o.QueuePolicies = append(append(qs, o.QueuePolicies...), tempQueuePolicy)
	o.TopicPolicies = append(ts, o.TopicPolicies...)
	if c.MaxQueues > 0 {
		o.MaxQueues = c.MaxQueues
	}
	if c.Quota > 0 {
		o.MaxQueueBytes = c.Quota
	}
	if c.QuotaMessages > 0 {
		o.MaxQueueMessages = c.QuotaMessages
	}
	if c.MaxSubscriptions > 0 {
		o.MaxSubscriptions = c.MaxSubscriptions
	}
	if c.MaxDurableSubscriptions > 0 {
		o.MaxDurables = c.MaxDurableSubscriptions
	}
	if st, ok := shareStrategies[c.SharedSubscriptionStrategy]; ok {
		o.ShareStrategy = st
	}
	return o
}

// Bounds of one temporary queue. A connection names at most a front-end's limit of them (STOMP:
// MaxTempDestinations), so together they hold at most that many times TempQueueQuota.
const (
	TempQueueQuota    = 1 << 20
	TempQueueMessages = 1000
)

// tempQueuePolicy bounds every temporary queue, after the host's own policies (which name queues and
// durable subscriptions only). A full one drops what arrives: the owner that does not read its replies
// pays, never the responder that sends them (FullBlock would hold a service up, then refuse it).
var tempQueuePolicy = router.QueuePolicy{
	Filter:      router.Filter{Kind: router.TempQueue, Segs: []router.Seg{{Kind: router.SegMany}}},
	MaxBytes:    TempQueueQuota,
	MaxMessages: TempQueueMessages,
	Full:        router.FullDropTail,
}

// shareStrategies maps shared_subscription_strategy onto the router's; "" keeps the router's default.
var shareStrategies = map[conf.ShareStrategy]router.ShareStrategy{
	conf.ShareRoundRobin:   router.ShareRoundRobin,
	conf.ShareRandom:       router.ShareRandom,
	conf.ShareSticky:       router.ShareSticky,
	conf.ShareHashClientID: router.ShareHashClientID,
	conf.ShareHashTopic:    router.ShareHashTopic,
}

// policyGrammar parses policy patterns: the STOMP default grammar, where a name without a prefix is of
// the kind the block is about.
func policyGrammar(k router.Kind) (*router.Grammar, error) {
	gc := router.STOMPGrammarConfig()
	gc.RequirePrefix = false
	gc.DefaultKind = k
	return router.NewGrammar(gc)
}

// policies converts the queue, dsub and topic blocks of c (in that order: a policy applies to its own
// kind only). The error lists the first pattern that does not parse; the others are still converted.
func policies(c conf.VirtualHost) ([]router.QueuePolicy, []router.TopicPolicy, error) {
	var firstErr error
	keep := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	qg, err := policyGrammar(router.Queue)
	if err != nil {
		return nil, nil, err
	}
	tg, err := policyGrammar(router.Topic)
	if err != nil {
		return nil, nil, err
	}
	dg, err := policyGrammar(router.DurableSub)
	if err != nil {
		return nil, nil, err
	}
	type block struct {
		what string
		g    *router.Grammar
		p    conf.QueuePolicy
	}
	var blocks []block
	for _, p := range c.Queues {
		blocks = append(blocks, block{"queue", qg, p})
	}
	for _, p := range c.Dsubs {
		blocks = append(blocks, block{"dsub", dg, p})
	}
	var qs []router.QueuePolicy
	for _, b := range blocks {
		p := b.p
		f, err := b.g.ParseFilter(p.Pattern)
		if err != nil {
			keep(fmt.Errorf("virtualhost %s: %s %q: %w", c.Name, b.what, p.Pattern, err))
			continue
		}
		rp := router.QueuePolicy{
			Filter:          f,
			NakLimit:        p.NakLimit,
			MaxMessages:     p.QuotaMessages,
			MaxBytes:        p.Quota,
			AutoDeleteAfter: p.AutoDeleteAfter,
		}
		switch p.FullPolicy {
		case conf.FullDropHead:
			rp.Full = router.FullDropHead
		case conf.FullDropTail:
			rp.Full = router.FullDropTail
		default:
			rp.Full = router.FullBlock
		}
		if p.DLQ != "" {
			dlq, err := dlqTemplate(qg, p.DLQ)
			if err != nil {
				keep(fmt.Errorf("virtualhost %s: %s %q: dlq: %w", c.Name, b.what, p.Pattern, err))
				continue
			}
			rp.DLQ = dlq
		}
		qs = append(qs, rp)
	}
	var ts []router.TopicPolicy
	for _, p := range c.Topics {
		f, err := tg.ParseFilter(p.Pattern)
		if err != nil {
			keep(fmt.Errorf("virtualhost %s: topic %q: %w", c.Name, p.Pattern, err))
			continue
		}
		tp := router.TopicPolicy{Filter: f, SlowConsumer: router.SlowBlock}
		if p.SlowConsumerPolicy == conf.SlowQueue {
			tp.SlowConsumer = router.SlowQueue
		}
		ts = append(ts, tp)
	}
	return qs, ts, firstErr
}

// dlqTemplate turns a dlq name ("dlq.*") into the router's path template: a "*" segment stands for the
// name of the queue the message comes from.
func dlqTemplate(g *router.Grammar, name string) ([]string, error) {
	f, err := g.ParseFilter(name)
	if err != nil {
		return nil, err
	}
	if f.Kind != router.Queue {
		return nil, fmt.Errorf("%q is not a queue", name)
	}
	out := make([]string, len(f.Segs))
	for i, s := range f.Segs {
		switch s.Kind {
		case router.SegLiteral:
			out[i] = s.Text
		case router.SegOne:
			out[i] = "*"
		default:
			return nil, fmt.Errorf("%q: only whole-segment \"*\" may stand for the queue's name", name)
		}
	}
	return out, nil
}

// CheckPolicies reports the first queue or topic pattern (or dlq name) of c that does not parse.
func CheckPolicies(c conf.VirtualHost) error {
	_, _, err := policies(c)
	return err
}
