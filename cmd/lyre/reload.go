package main

// Live reload: SIGHUP and POST /api/v1/reload re-read the configuration and apply it in place
// (DESIGN.md §8). The order of the steps is in Reload's comment; the why of each is beside it.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/virtualhost"
)

// errShutDown answers a reload asked for after Shutdown.
var errShutDown = errors.New("lyre: the broker is shut down: nothing to reload")

// errReloaded is the close reason of a connection a reload closed that did not end within reloadDrain
// after its goodbye.
var errReloaded = errors.New("lyre: closed by a configuration reload")

// reloadDrain bounds how long a reload waits for the connections it closes (their goodbye is flushed
// within die_delay) before it closes them hard; the hosts they used are closed after.
const reloadDrain = 10 * time.Second

// reloadPlan is what a reload changes, decided and checked before anything changes.
type reloadPlan struct {
	cfg       *conf.Config
	updates   []hostUpdate
	addHosts  []conf.VirtualHost  // new hosts, and hosts whose store changed
	dropHosts []*virtualhost.Host // removed hosts, and hosts whose store changed
	addConns  []conf.Connector    // new connectors, and changed ones
	dropConns []string            // removed connectors, and changed ones
	replaced  map[string]bool     // connectors and hosts both dropped and added, by name
	running   []conf.Connector    // the connectors running before
	hostsRan  []*virtualhost.Host // the hosts running before
	summary   map[string][]string // what changed, for the log line
	closing   []*protocol.Conn    // connections the reload is closing
	errs      []error             // what failed while applying
}

type hostUpdate struct {
	h  *virtualhost.Host
	ch *virtualhost.Change
}

// Reload re-reads the configuration file the broker was started with (the embedded default when none:
// then it is only applied again) and applies it in place. A configuration with errors is refused whole:
// the errors are logged, with the same file:line:col messages as --check, and returned, and the running
// configuration is kept. Otherwise, in this order:
//
//  1. every kept host takes its new users, rules, policies and limits (virtualhost.Change.Apply);
//     removed hosts, and hosts whose store moved, are retired: they refuse new logins;
//  2. removed and changed connectors are closed (their connections get the shutdown goodbye); every
//     connection is re-checked (protocol.Server.Recheck): those of retired hosts, removed users and
//     revoked rights are told and closed; the reload waits for them;
//  3. new hosts are opened (their MQTT sessions restored) and the registry takes them in configuration
//     order in place of the retired ones, which are closed; new and changed connectors are bound; the
//     other TLS connectors reload their certificate files;
//  4. the new configuration is stored (sys_interval, the management API's view), management forgets its
//     cached credentials, and one line says what changed.
//
// Connections of an unchanged host on an unchanged connector are never closed. A failure while applying
// (a port in use, a store that does not open) is logged and returned; the rest is applied.
func (b *Broker) Reload() error {
	b.reloading.Lock()
	defer b.reloading.Unlock()
	if b.down {
		return errShutDown
	}
	src := b.cfg.Load().Source
	cfg, err := reloadConfig(src)
	if err != nil {
		b.logRefused(src, err)
		return fmt.Errorf("reload refused, configuration kept: %w", err)
	}
	p, err := b.plan(cfg)
	if err != nil {
		b.logRefused(src, err)
		return fmt.Errorf("reload refused, configuration kept: %w", err)
	}
	b.applyHosts(p)
	b.closeConnections(p)
	b.openNew(p)
	old := b.cfg.Swap(cfg)
	warnAnonymous(cfg, b.log)
	warnOpenFiles(cfg, b.log)
	b.logSummary(p, old)
	return errors.Join(p.errs...)
}

// reloadConfig loads the configuration at src, or the embedded one.
func reloadConfig(src string) (*conf.Config, error) {
	if src == conf.DefaultSource {
		return conf.Default(), nil
	}
	return conf.Load(src)
}

// logRefused logs a refused reload, one message per problem, as --check prints them.
func (b *Broker) logRefused(src string, err error) {
	var problems []string
	var es conf.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			problems = append(problems, e.Error())
		}
	} else {
		problems = []string{err.Error()}
	}
	b.log.Error("reload refused: the configuration has errors; the running configuration is kept",
		zap.String("config", src), zap.Strings("errors", problems))
}

// plan compares cfg with what runs and checks what can be checked before anything changes: each kept
// host's new configuration (users file, rules: virtualhost.Host.Prepare), each new connector, and the
// certificate files of every TLS connector (protocol.Server.CheckConnector).
func (b *Broker) plan(cfg *conf.Config) (*reloadPlan, error) {
	p := &reloadPlan{cfg: cfg, replaced: make(map[string]bool), summary: make(map[string][]string),
		running: b.srv.Connectors(), hostsRan: b.hosts.Hosts()}
	for _, h := range p.hostsRan {
		vc := cfg.Host(h.Name)
		switch {
		case vc == nil:
			p.dropHosts = append(p.dropHosts, h)
			p.note("hosts_removed", h.Name)
		case !reflect.DeepEqual(vc.Store, h.Config().Store):
			p.dropHosts, p.addHosts = append(p.dropHosts, h), append(p.addHosts, *vc)
			p.replaced[h.Name] = true
			p.note("hosts_replaced", h.Name+" (store changed)")
		default:
			ch, err := h.Prepare(*vc, virtualhost.WithBrokerRules(cfg.AccessRules))
			if err != nil {
				return nil, fmt.Errorf("virtual_host %q: %w", h.Name, err)
			}
			p.updates = append(p.updates, hostUpdate{h, ch})
			if what := ch.What(); len(what) > 0 {
				p.note("hosts_changed", h.Name+" ("+strings.Join(what, ", ")+")")
			}
		}
	}
	for _, vc := range cfg.VirtualHosts {
		if !slices.ContainsFunc(p.hostsRan, func(h *virtualhost.Host) bool { return strings.EqualFold(h.Name, vc.Name) }) {
			p.addHosts = append(p.addHosts, vc)
			p.note("hosts_added", vc.Name)
		}
	}
	return p, b.planConnectors(p)
}

// planConnectors compares the configuration's connectors with those bound.
func (b *Broker) planConnectors(p *reloadPlan) error {
	for _, c := range p.running {
		nc := p.cfg.Connector(c.Name)
		switch {
		case nc == nil:
			p.dropConns = append(p.dropConns, c.Name)
			p.note("connectors_removed", c.Name)
		case !reflect.DeepEqual(c, *nc):
			p.dropConns, p.addConns = append(p.dropConns, c.Name), append(p.addConns, *nc)
			p.replaced[c.Name] = true
			p.note("connectors_replaced", c.Name)
		}
	}
	for _, c := range p.cfg.Connectors {
		if !slices.ContainsFunc(p.running, func(r conf.Connector) bool { return r.Name == c.Name }) {
			p.addConns = append(p.addConns, c)
			p.note("connectors_added", c.Name)
		}
	}
	// New connectors are checked whole; kept TLS ones too, whose certificate files are read again.
	for _, c := range p.cfg.Connectors {
		if c.TLS != nil || slices.ContainsFunc(p.addConns, func(a conf.Connector) bool { return a.Name == c.Name }) {
			if err := b.srv.CheckConnector(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// note records a change for the summary line.
func (p *reloadPlan) note(what, name string) { p.summary[what] = append(p.summary[what], name) }

// applyHosts puts the kept hosts' changes in place and retires the hosts that go. A retired host stays in
// the registry, refusing every login (virtualhost.Host.Acquire), until the new hosts are in place
// (openNew): were it taken out now, a client naming no host could land on another tenant's host while
// the default one is being replaced.
func (b *Broker) applyHosts(p *reloadPlan) {
	for _, u := range p.updates {
		u.ch.Apply()
	}
	for _, h := range p.dropHosts {
		h.Retire()
	}
	b.hosts.Set(b.hosts.Hosts()...) // host names may have changed in place
}

// closeConnections closes the connectors that go, re-checks every connection, and waits for those
// closing (at most reloadDrain, then they are closed hard).
func (b *Broker) closeConnections(p *reloadPlan) {
	for _, name := range p.dropConns {
		if p.replaced[name] {
			b.log.Info("connector replaced: its settings changed", zap.String("connector", name))
		}
		conns, _ := b.srv.CloseConnector(name)
		p.closing = append(p.closing, conns...)
	}
	p.closing = append(p.closing, b.srv.Recheck()...)
	ctx, cancel := context.WithTimeout(context.Background(), reloadDrain)
	defer cancel()
	if b.srv.WaitGone(ctx, p.closing) != nil {
		for _, c := range p.closing {
			c.Close(errReloaded) // a pending goodbye's reason stays: this only ends the wait
		}
		wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
		_ = b.srv.WaitGone(wctx, p.closing)
		wcancel()
	}
}

// closeHost closes a retired host once its clients are gone: their front-ends' cleanup used its router
// and store until then.
func (b *Broker) closeHost(h *virtualhost.Host) {
	deadline := time.Now().Add(time.Second)
	for h.Connections() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // a login that took its slot just before Retire
	}
	if n := h.Connections(); n > 0 {
		b.log.Warn("closing a removed virtual host with clients still attached", zap.String("vhost", h.Name), zap.Int("clients", n))
	}
	b.mqtt.ForgetHost(h)
	h.Close()
}

// openNew opens the hosts added (restoring their MQTT sessions before clients can reach them), swaps
// them into the registry in configuration order in place of the retired ones, closes those, binds the
// connectors added, and reloads the certificates of the others. A retired host whose store directory a
// new host takes is closed first (badger locks its directory): its name is out of the registry for that
// moment.
func (b *Broker) openNew(p *reloadPlan) {
	closed := make(map[*virtualhost.Host]bool)
	for _, h := range p.dropHosts {
		if st := h.Config().Store; st != nil && slices.ContainsFunc(p.addHosts, func(vc conf.VirtualHost) bool {
			return vc.Store != nil && filepath.Clean(vc.Store.Directory) == filepath.Clean(st.Directory)
		}) {
			b.hosts.Set(slices.DeleteFunc(slices.Clone(b.hosts.Hosts()), func(x *virtualhost.Host) bool { return x == h })...)
			b.closeHost(h)
			closed[h] = true
		}
	}
	opened := make(map[string]*virtualhost.Host, len(p.addHosts))
	for _, vc := range p.addHosts {
		h, err := openHost(vc, p.cfg, b.log)
		if err != nil {
			b.log.Error("reload: virtual host not opened", zap.String("vhost", vc.Name), zap.Error(err))
			p.errs = append(p.errs, err)
			continue
		}
		if h.Durable() {
			b.log.Info("sessions and durable subscriptions restored", zap.String("vhost", h.Name),
				zap.Int("mqtt_sessions", b.mqtt.RestoreHost(h)), zap.Int("durable_subscriptions", h.Router.Stats().Durables))
		}
		opened[vc.Name] = h
	}
	order := make([]*virtualhost.Host, 0, len(p.cfg.VirtualHosts))
	for _, vc := range p.cfg.VirtualHosts {
		h := opened[vc.Name]
		if h == nil {
			h = b.hosts.Lookup(vc.Name)
		}
		if h != nil && !h.Retired() {
			order = append(order, h)
		}
	}
	b.hosts.Set(order...) // in configuration order: the first is the default
	for _, h := range p.dropHosts {
		if !closed[h] {
			b.closeHost(h)
		}
	}
	for _, c := range p.addConns {
		if err := b.srv.Listen(c); err != nil {
			b.log.Error("reload: connector not bound", zap.String("connector", c.Name), zap.Error(err))
			p.errs = append(p.errs, err)
		}
	}
	b.reloadCertificates(p)
}

// reloadCertificates reads the certificate files of the TLS connectors that were kept again: a renewed
// certificate is served to new connections without touching established ones.
func (b *Broker) reloadCertificates(p *reloadPlan) {
	kept := slices.ContainsFunc(p.running, func(c conf.Connector) bool {
		return c.TLS != nil && !slices.Contains(p.dropConns, c.Name)
	})
	if !kept {
		return
	}
	if err := b.srv.ReloadCertificates(); err != nil {
		b.log.Error("certificate reload failed, previous certificates kept", zap.Error(err))
		p.errs = append(p.errs, err)
		return
	}
	b.log.Info("certificates reloaded")
}

// logSummary logs one line saying what the reload changed.
func (b *Broker) logSummary(p *reloadPlan, old *conf.Config) {
	fields := []zap.Field{zap.String("config", p.cfg.Source)}
	for _, k := range []string{"hosts_added", "hosts_removed", "hosts_replaced", "hosts_changed",
		"connectors_added", "connectors_removed", "connectors_replaced"} {
		if v := p.summary[k]; len(v) > 0 {
			fields = append(fields, zap.Strings(k, v))
		}
	}
	if !reflect.DeepEqual(old.AccessRules, p.cfg.AccessRules) {
		fields = append(fields, zap.Bool("broker_access_rules_changed", true))
	}
	if old.SysInterval != p.cfg.SysInterval {
		fields = append(fields, zap.Duration("sys_interval", p.cfg.SysInterval))
	}
	if !reflect.DeepEqual(old.Cluster, p.cfg.Cluster) {
		// The link is started once; joining, leaving or re-routing a running node is not done in place.
		b.log.Warn("cluster block changed: it takes effect at the next restart")
	}
	fields = append(fields, zap.Int("connections_closed", len(p.closing)))
	if len(p.errs) > 0 {
		fields = append(fields, zap.Int("failures", len(p.errs)))
	}
	b.log.Info("configuration reloaded", fields...)
}
