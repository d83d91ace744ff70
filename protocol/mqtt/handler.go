package mqtt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// Close reasons. They are the connection's close reason, logged once by the connection core.
var (
	errFirstNotConnect   = errors.New("mqtt: first packet is not CONNECT [MQTT-3.1.0-1]")
	errSecondConnect     = errors.New("mqtt: second CONNECT [MQTT-3.1.0-2]")
	errKeepAlive         = errors.New("mqtt: keep-alive expired [MQTT-3.1.2-24]")
	errConnectTimeout    = errors.New("mqtt: no CONNECT in time")
	errTakenOver         = errors.New("mqtt: session taken over by a new connection with the same client id [MQTT-3.1.4-2]")
	errTakeoverTimeout   = errors.New("mqtt: previous connection with the same client id did not end in time")
	errRefused           = errors.New("mqtt: connection refused")
	errInvalidTopic      = errors.New("mqtt: invalid topic name")
	errUnexpectedPacket  = errors.New("mqtt: unexpected packet type")
	errNotRouted         = errors.New("mqtt: message not routed, not acknowledged")
	errNoHost            = errors.New("mqtt: no virtual host")
	errOutboundClosed    = errors.New("mqtt: outbound closed")
	errDisconnectRequest = fmt.Errorf("mqtt: %w", protocol.ErrDisconnected)
	// errDisconnectWill is an MQTT 5 DISCONNECT with reason 0x04: a clean end that still sends the will.
	errDisconnectWill = fmt.Errorf("mqtt: %w with will (0x04)", protocol.ErrDisconnected)
	// errClosing ends Serve after the connection was already told to close (CONNACK refusal).
	errClosing = errors.New("mqtt: closing")
)

// CONNACK return codes (MQTT 3.1.1 §3.2.2.3); MQTT 5 clients get their reason codes (connackCode).
const (
	connAccepted          byte = 0x00
	connBadVersion        byte = 0x01
	connIDRejected        byte = 0x02
	connServerUnavailable byte = 0x03
	connBadCredentials    byte = 0x04
	connNotAuthorized     byte = 0x05
	subackFailure         byte = 0x80
)

const (
	// connectTimeout bounds the wait for CONNECT when the connector sets no detect timeout.
	connectTimeout = 10 * time.Second
	// takeoverWait bounds how long a new connection waits for the one it replaces to release the session.
	takeoverWait = 5 * time.Second
	// maxClientID31 is MQTT 3.1's client identifier limit.
	maxClientID31 = 23
)

// Handler serves MQTT connections. One Handler serves every connector; it keeps one session registry
// per virtual host so a client id is unique within its host.
type Handler struct {
	hosts *virtualhost.Registry
	log   *zap.Logger

	mu         sync.Mutex
	registries map[*virtualhost.Host]*registry

	refusals protocol.Refusals
	closed   atomic.Bool // Close ran: no more expiry timers

	// dir claims client ids cluster-wide (cluster.go); nil without a cluster, set before any connection.
	dir virtualhost.SessionDirectory
	// records keeps persistent sessions' records cluster-wide (cluster.go); nil when they are not.
	records virtualhost.SessionRecords
	// stop ends the claims' verification goroutines (verifies) at Close.
	stop     chan struct{}
	stopOnce sync.Once
	verifies sync.WaitGroup
}

// NewHandler returns a handler routing into hosts. log receives handler-level events; per-connection
// events go to the connection's logger.
func NewHandler(hosts *virtualhost.Registry, log *zap.Logger) *Handler {
	if log == nil {
		log = zap.NewNop()
	}
	return &Handler{hosts: hosts, log: log, registries: make(map[*virtualhost.Host]*registry), stop: make(chan struct{})}
}

func (h *Handler) registry(host *virtualhost.Host) *registry {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.registries[host]
	if r == nil {
		r = &registry{sessions: make(map[string]*session)}
		h.registries[host] = r
	}
	return r
}

// SessionCount returns the number of sessions (connected or kept offline) of a virtual host.
func (h *Handler) SessionCount(host *virtualhost.Host) int {
	r := h.registry(host)
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// client is one network connection's state, owned by its reader goroutine.
type client struct {
	h    *Handler
	c    *protocol.Conn
	lim  *conf.MQTT // the connector's, defaults applied, shared by its clients (protocol.Settings)
	g    *router.Grammar
	rd   *packet.Reader
	host *virtualhost.Host
	rt   *router.Router
	// principal is who the client authenticated as; the reader changes it under sess.mu, where the
	// reload's re-check reads it. slot is set while the client holds one of its host's connection slots.
	principal virtualhost.Principal
	slot      *virtualhost.Host
	version   byte
	// limitLogged: a bound refused this client something and it was logged (limitReached); reader only.
	limitLogged bool
	keep        time.Duration // read deadline after each packet: 1.5 × keep-alive; 0 = none
	sess        *session
	att         *attachment
	will        *willMsg
	user        string  // who the client logged in as ("" anonymous), fixed at CONNECT: for Describe
	v5          *v5conn // nil below MQTT 5
	// connacked is the protocol level once CONNACK went out (0 before): from then on an MQTT 5 client is told
	// why the server closes (DISCONNECT). Atomic: the shutdown hook reads it.
	connacked atomic.Uint32
	// drain (cap 1) wakes a reader waiting to queue a control packet when OnDrain fires. Made by the first
	// wait: most connections never wait, and a channel costs 96 bytes.
	drain atomic.Pointer[chan struct{}]
	// acks orders acknowledgements behind the writes they wait for (ack.go); nil until one waits. Atomic:
	// the writer's OnDrain hook flushes it.
	acks atomic.Pointer[protocol.AckQueue[mqttAck]]
	// adopt is a principal a reload's re-check posted (the user's groups changed), taken by the reader
	// before its next packet; revoked what a re-check that ends the connection leaves to the reader
	// (recheck.go).
	adopt   atomic.Pointer[virtualhost.Principal]
	revoked atomic.Pointer[revocation]
	// lastTopic and lastDest cache the last topic name parsed.
	lastTopic string
	lastDest  router.Destination
}

// Serve implements protocol.Handler: it answers CONNECT, then hands the session to the connection core,
// which steps it packet by packet (Step) and may park it between packets.
func (h *Handler) Serve(c *protocol.Conn) {
	var cl *client
	var err error
	stepping := false
	defer func() {
		// Also after a failed CONNACK or a panic: a session taken must be released, or its client id
		// would wait for it forever.
		if cl != nil && !stepping {
			cl.release(err)
		}
	}()
	protocol.Apart(func() {
		if cl = h.newClient(c); cl != nil {
			err = cl.connect()
		}
	})
	if cl == nil {
		return
	}
	if err == nil {
		if cl.keep == 0 {
			_ = c.SetReadDeadline(time.Time{}) // CONNECT's is lifted
		}
		cl.armKeepAlive()
		c.Continue(cl)
		stepping = true
		return
	}
	cl.closeFor(err)
}

// release detaches the session (kept or ended: a DISCONNECT ended it gracefully) and gives back the
// host's connection slot.
func (cl *client) release(err error) {
	if cl.att != nil {
		cl.end(errors.Is(err, errDisconnectRequest))
	}
	if cl.slot != nil {
		cl.slot.Release()
	}
}

// newClient prepares a connection's state.
func (h *Handler) newClient(c *protocol.Conn) *client {
	set := c.Settings()
	cl := &client{h: h, c: c, g: set.MQTTGrammar, lim: &set.Connector.MQTT}
	cl.rd = packet.NewReader(c.Reader(), int(min(cl.lim.MaxMessageLength, int64(^uint(0)>>1))))
	// More filters in one packet than a client may hold could never all be granted: stop decoding there.
	cl.rd.SetMaxFilters(cl.lim.MaxSubscriptions)
	cl.rd.SetReuse(true) // packets are handled before the next is read, and never kept
	c.OnShutdown(cl.onShutdown)
	return cl
}

// closeFor closes the connection with the reason Serve ended, unless the client said DISCONNECT (the
// connection core flushes and closes) or a refusal already arranged the close. An MQTT 5 client is sent
// a DISCONNECT with the reason code first [MQTT-4.13.2-1].
func (cl *client) closeFor(err error) {
	if err == nil || errors.Is(err, protocol.ErrDisconnected) || errors.Is(err, errClosing) {
		return
	}
	if rc, ok := reasonOf(err); ok && cl.connacked.Load() == uint32(packet.Version5) {
		disconnect(cl.c, cl.version, rc, err, cl.lim.DieDelay)
		return
	}
	cl.c.Close(err)
}

// shutdownVersion is the protocol level the shutdown goodbye is encoded for: MQTT 5 only once CONNACK
// went out (a DISCONNECT before CONNACK is a protocol error).
func (cl *client) shutdownVersion() byte {
	if cl.connacked.Load() == uint32(packet.Version5) {
		return packet.Version5
	}
	return packet.Version311
}

// onDrain runs on the writer goroutine whenever the outbound queue empties.
func (cl *client) onDrain() {
	if ch := cl.drain.Load(); ch != nil {
		select {
		case *ch <- struct{}{}:
		default:
		}
	}
	if s := cl.sess; s != nil {
		s.drained(cl.c)
	}
	if q := cl.acks.Load(); q != nil {
		q.Flush()
	}
}

// connect reads and answers CONNECT. A nil error means the session is attached and CONNACK queued.
func (cl *client) connect() error {
	c := cl.c
	cp, err := cl.readConnect()
	if err != nil {
		return err
	}
	cl.version = cp.ProtocolLevel
	cl.rd.SetVersion(cl.version)
	var askedExpiry uint32
	if cl.version == packet.Version5 {
		cl.connectV5(cp)
		askedExpiry = cl.expiryOf(cp.CleanSession)
		if p := cp.Properties; p != nil && p.SessionExpiryInterval != nil {
			askedExpiry = *p.SessionExpiryInterval
		}
	}
	id, assigned, err := cl.connectID(cp)
	if err != nil {
		return err
	}

	host, user := cl.pickHost(cp)
	if host == nil {
		return cl.refuse(connServerUnavailable, fmt.Errorf("%w: %w %q", errRefused, errNoHost, c.Connector().VirtualHost))
	}
	principal, authData, code, err := cl.authenticate(host, user, cp, id)
	switch {
	case err != nil && code == 0: // gone during an authentication exchange: nobody to answer
		return err
	case err != nil:
		return cl.refuseLogin(cp, code, fmt.Errorf("%w: %w", errRefused, err))
	}
	cl.host, cl.rt, cl.user, cl.principal, cl.slot = host, host.Router, principal.User, principal, host

	if err := cl.setWill(cp, id); err != nil {
		return err
	}
	keep, tellKeep := cl.keepAlive(cp.KeepAlive)
	if keep > 0 {
		cl.keep = time.Duration(keep) * time.Second * 3 / 2
	}

	present, err := cl.attachSession(cp, id, cl.expiryOf(cp.CleanSession))
	if err != nil {
		return err
	}
	c.SetSession(cl) // management lists it (manage.go)
	if ce := cl.check("connect"); ce != nil {
		ce.Write(zap.String("client_id", id), zap.String("vhost", host.Name), zap.String("user", user),
			zap.Bool("clean_session", cp.CleanSession), zap.Bool("session_present", present),
			zap.Uint16("keep_alive", keep), zap.Uint8("level", cl.version))
	}
	// [MQTT-3.2.2-1] [MQTT-3.2.2-2]
	ack := &packet.ConnackPacket{SessionPresent: present, ReturnCode: connAccepted}
	if cl.v5 != nil {
		ack.Properties = cl.connackProps(assigned, keep, tellKeep, askedExpiry)
		if p := cp.Properties; p != nil && p.RequestResponseInformation != nil && *p.RequestResponseInformation == 1 {
			ack.Properties.ResponseInformation = cl.responseInformation(id)
		}
		if cl.v5.authMethod != "" {
			ack.Properties.AuthenticationMethod = cl.v5.authMethod
			ack.Properties.AuthenticationData = authData
		}
	}
	if !cl.writeConnack(ack) {
		return errOutboundClosed
	}
	cl.resume()
	c.OnRecheck(cl.recheck) // a reload re-checks the client (recheck.go)
	return nil
}

// readConnect reads the first packet, which must be a CONNECT of protocol level 3, 4 or 5; another level
// is refused with CONNACK.
func (cl *client) readConnect() (*packet.ConnectPacket, error) {
	_ = cl.c.SetReadDeadline(time.Now().Add(cl.connectWait()))
	p, err := cl.rd.ReadPacket()
	cp, isConnect := p.(*packet.ConnectPacket)
	if errors.Is(err, packet.ErrUnsupportedVersion) && isConnect {
		// [MQTT-3.1.2-2]: answer 0x01 and close.
		cl.version = packet.Version311
		return nil, cl.refuse(connBadVersion, fmt.Errorf("%w: %w", errRefused, err))
	}
	if err != nil {
		if isConnect && cp.ProtocolLevel == packet.Version5 {
			// A malformed MQTT 5 CONNECT is answered with a CONNACK reason code [MQTT-4.13.1-1].
			cl.version = packet.Version5
			return nil, cl.refuse(packet.ReasonFor(err), cl.readError(err, errConnectTimeout))
		}
		return nil, cl.readError(err, errConnectTimeout)
	}
	if !isConnect {
		return nil, fmt.Errorf("%w: got %s", errFirstNotConnect, p.Type())
	}
	return cp, nil
}

// connectID returns the client id of CONNECT cp, made up for an empty one (and then also returned as
// assigned, for MQTT 5's CONNACK [MQTT-3.2.2-16]), or the refusal of an id the protocol level does not
// allow.
func (cl *client) connectID(cp *packet.ConnectPacket) (id, assigned string, err error) {
	id = cp.ClientID
	switch {
	case id == "" && cl.version == packet.Version5:
		// [MQTT-3.1.3-6]: any clean start; the client learns the id from CONNACK.
		id = newClientID()
		return id, id, nil
	case id == "" && (!cp.CleanSession || cl.version == packet.Version31):
		// [MQTT-3.1.3-8]; MQTT 3.1 requires an id.
		return "", "", cl.refuse(connIDRejected, fmt.Errorf("%w: empty client id without clean session", errRefused))
	case id == "":
		id = newClientID()
	case cl.version == packet.Version31 && utf8.RuneCountInString(id) > maxClientID31:
		return "", "", cl.refuse(connIDRejected, fmt.Errorf("%w: MQTT 3.1 client id longer than 23", errRefused))
	}
	return id, "", nil
}

// setWill keeps the will of CONNECT cp, if any, to publish when the connection ends other than by
// DISCONNECT.
func (cl *client) setWill(cp *packet.ConnectPacket, id string) error {
	if !cp.WillFlag {
		return nil
	}
	d, err := cl.parseTopic(cp.WillTopic)
	if err != nil {
		return fmt.Errorf("will topic: %w", err)
	}
	if err := cl.checkLength(len(cp.WillPayload), "will"); err != nil {
		if cl.version == packet.Version5 {
			return cl.refuse(packet.ReasonPacketTooLarge, fmt.Errorf("%w: %w", errRefused, err))
		}
		// 3.1.1 has no CONNACK code for it: "close the Network Connection without sending a CONNACK" (3.2.2.3).
		cl.c.CloseAfter(err, cl.lim.DieDelay)
		return errClosing
	}
	w := &willMsg{Message: router.Message{Dest: d, Body: cp.WillPayload, QoS: cp.WillQoS, Persistent: cp.WillQoS > 0,
		Retain: cp.WillRetain, Origin: cp.WillTopic, OriginGram: cl.g}}
	if cl.v5 != nil && cp.WillProperties != nil {
		// The will's properties are a PUBLISH's (3.1.3.2): they travel with it. Those the broker refuses
		// refuse the CONNECT with the same reason code (0x99, 0x90).
		if rc, err := cl.messageProps(&w.Message, cp.WillProperties); err != nil {
			return cl.refuse(rc, fmt.Errorf("%w: will: %w", errRefused, err))
		}
		w.Expires = 0 // counts from publication, not from CONNECT (3.1.3.2.4)
		if e := cp.WillProperties.MessageExpiryInterval; e != nil {
			w.expiry = *e
		}
	}
	cl.will = w
	if !cl.maySend(d, cp.WillTopic, id) {
		cl.will = nil // a will the client may not send is never published
	}
	return nil
}

// willMsg is a client's will message. Its Message Expiry Interval counts from when it is published,
// which the will delay and the session expiry may put long after CONNECT (3.1.3.2.4).
type willMsg struct {
	router.Message
	expiry uint32 // seconds; 0: none
}

// attachSession takes over, or makes, the session of client id, unless another user owns it, and
// reports whether it existed.
func (cl *client) attachSession(cp *packet.ConnectPacket, id string, expiry uint32) (present bool, err error) {
	if !cl.mayTakeSession(id) {
		// A user refused another's session could connect with another client id: 0x05 tells nothing more.
		return false, cl.refuse(connNotAuthorized, fmt.Errorf("%w: %w", errRefused, errSessionOwner))
	}
	s, present, err := cl.takeSession(id, cp.CleanSession, expiry)
	if err != nil {
		return false, err
	}
	cl.sess = s
	if err := cl.claimSession(present); err != nil {
		return false, err
	}
	return present, nil
}

// refuse queues a CONNACK with a non-zero code (a 3.1.1 return code, or an MQTT 5 reason code for a
// refusal 3.1.1 has no code for) and closes the connection after die_delay at the latest
// [MQTT-3.2.2-6]. The returned error ends Serve without a second close.
func (cl *client) refuse(code byte, reason error) error {
	return cl.refuseAs(code, reason, reason)
}

// refuseAs is refuse telling the client shown (an MQTT 5 reason string) rather than reason, which the
// connection's close is logged with.
func (cl *client) refuseAs(code byte, shown, reason error) error {
	if b, ok := cl.c.Begin(); ok {
		ack := &packet.ConnackPacket{ReturnCode: connackCode(cl.version, code)}
		if rs := cl.problem(shown); rs != "" || (cl.version == packet.Version5 && cl.v5 == nil) {
			// A CONNECT too broken to read its Request Problem Information gets the reason too.
			ack.Properties = &packet.Properties{ReasonString: reasonString(shown)}
		}
		cl.c.Commit(packet.Append(b, ack, cl.version))
	}
	cl.c.CloseAfter(reason, cl.lim.DieDelay)
	return errClosing
}

// pickHost chooses the virtual host: the connector's, else a "user@host" user name naming a known host
// (the user name is then the part before the '@'), else the TLS SNI name when it names a known host,
// else a WebSocket's HTTP Host header when it names a known host, else the default host.
func (cl *client) pickHost(cp *packet.ConnectPacket) (*virtualhost.Host, string) {
	user := cp.Username
	if name := cl.c.Connector().VirtualHost; name != "" {
		return cl.h.hosts.Lookup(name), user
	}
	if i := strings.LastIndexByte(user, '@'); cp.UsernameFlag && i >= 0 {
		if host := cl.h.hosts.Lookup(user[i+1:]); host != nil {
			return host, user[:i]
		}
	}
	if sni := cl.c.ServerName(); sni != "" {
		if host := cl.h.hosts.Lookup(sni); host != nil {
			return host, user
		}
	}
	if name := cl.c.HTTPHost(); name != "" { // over WebSocket
		if host := cl.h.hosts.Lookup(name); host != nil {
			return host, user
		}
	}
	return cl.h.hosts.Default(), user
}

// check returns a debug entry to write, building the connection's logger (about 1 KiB) only when debug
// logging is on, so idle connections stay small.
func (cl *client) check(msg string) *zapcore.CheckedEntry {
	if !cl.h.log.Core().Enabled(zapcore.DebugLevel) {
		return nil
	}
	return cl.c.Log().Check(zapcore.DebugLevel, msg)
}

// newClientID returns an identifier no client is expected to choose: a prefix plus 64 random bits.
func newClientID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "lyre-" + hex.EncodeToString(b[:])
}

// readError turns a failed read into the connection's close reason.
func (cl *client) readError(err error, timeout error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return timeout
	}
	switch {
	case errors.Is(err, packet.ErrMalformed), errors.Is(err, packet.ErrProtocolViolation),
		errors.Is(err, packet.ErrPacketTooLarge), errors.Is(err, packet.ErrUnsupportedVersion):
		// [MQTT-4.8.0-1]: close on a malformed packet or protocol violation.
		return fmt.Errorf("mqtt: decode: %w", err)
	case errors.Is(err, packet.ErrTooManyFilters):
		return fmt.Errorf("mqtt: decode: %w (max_subscriptions)", err)
	}
	return err
}

// parseTopic parses a PUBLISH or will topic name: no wildcards [MQTT-3.3.2-2], at most max_topic_levels.
// Publishers mostly repeat one topic, so the last parsed name is kept (one entry: a map would cost an idle
// connection more than it saves); its path is shared by the messages, which never modify it.
func (cl *client) parseTopic(topic string) (router.Destination, error) {
	if topic == cl.lastTopic && cl.lastDest.Path != nil {
		return cl.lastDest, nil
	}
	if topic == "" {
		return router.Destination{}, fmt.Errorf("%w: empty [MQTT-4.7.3-1]", errInvalidTopic)
	}
	d, err := cl.g.ParseName(topic)
	if err != nil {
		return d, fmt.Errorf("%w: %w", errInvalidTopic, err)
	}
	if len(d.Path) > cl.lim.MaxTopicLevels {
		return d, fmt.Errorf("%w: more than %d levels", errInvalidTopic, cl.lim.MaxTopicLevels)
	}
	cl.lastTopic, cl.lastDest = topic, d
	return d, nil
}

// writeConnack queues CONNACK ack and records that the client has it, under the outbound lock, so that
// a shutdown's DISCONNECT (onShutdown, which reads it under the same lock) is queued after it or not at all.
func (cl *client) writeConnack(ack *packet.ConnackPacket) bool {
	for {
		if b, ok := cl.c.Begin(); ok {
			cl.connacked.Store(uint32(cl.version))
			cl.c.Commit(packet.Append(b, ack, cl.version))
			return true
		}
		if !cl.waitDrain() {
			return false
		}
	}
}

// onShutdown flushes what is queued and closes, at broker shutdown; an MQTT 5 client that has its CONNACK
// is told why first (DISCONNECT 0x8B).
func (cl *client) onShutdown() {
	c := cl.c
	if b, ok := c.Begin(); ok {
		if cl.shutdownVersion() == packet.Version5 {
			b = appendDisconnect(b, packet.ReasonServerShuttingDown, protocol.ErrServerClosed)
		}
		c.Commit(b)
	}
	c.CloseAfter(protocol.ErrServerClosed, cl.lim.DieDelay)
}

// writePacket queues a control packet, waiting for room while the outbound queue is over its limit:
// blocking this reader is the backpressure a client that does not read deserves. It reports false once
// the connection is closing.
func (cl *client) writePacket(p packet.Packet) bool {
	for {
		if b, ok := cl.c.Begin(); ok {
			cl.c.Commit(packet.Append(b, p, cl.version))
			return true
		}
		if !cl.waitDrain() {
			return false
		}
	}
}

// writeAck is writePacket for the acknowledgements, without allocating for a success.
func (cl *client) writeAck(a mqttAck) bool {
	for {
		if b, ok := cl.c.Begin(); ok {
			cl.c.CommitDeferred(cl.appendAck(b, a)) // flushed before the next read: one write per burst
			return true
		}
		if !cl.waitDrain() {
			return false
		}
	}
}

// waitDrain waits until the outbound queue empties or the connection closes.
func (cl *client) waitDrain() bool {
	ch := cl.drain.Load()
	if ch == nil {
		// A drain before the channel existed was not signalled: the caller tries Begin again first.
		made := make(chan struct{}, 1)
		cl.drain.Store(&made)
		return true
	}
	select {
	case <-*ch:
		return true
	case <-cl.c.Done():
		return false
	case <-time.After(time.Second):
		// Begin also refuses while CloseAfter flushes; Done then follows shortly.
		return true
	}
}
