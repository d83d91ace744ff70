package mqtt

// MQTT 5: what a connection agreed on in CONNECT and CONNACK, reason codes, and the server's DISCONNECT.

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/virtualhost"
)

// Close reasons of MQTT 5 only, each with the reason code its DISCONNECT carries (reasonOf).
var (
	errTopicAlias      = errors.New("mqtt: topic alias invalid")
	errUnknownAlias    = errors.New("mqtt: topic alias not set on this connection")
	errReceiveMaximum  = errors.New("mqtt: more unacknowledged QoS 1/2 PUBLISH packets than the Receive Maximum")
	errPayloadFormat   = errors.New("mqtt: payload is not UTF-8 as its format indicator says")
	errSessionExpiry   = errors.New("mqtt: DISCONNECT sets a session expiry on a session that had none (3.14.2.2.2)")
	errSubIDInPublish  = errors.New("mqtt: PUBLISH from a client carries a subscription identifier [MQTT-3.3.4-6]")
	errNoLocalShared   = errors.New("mqtt: no local on a shared subscription [MQTT-3.8.3-4]")
	errResponseTopic   = errors.New("mqtt: invalid response topic")
	errAuthUnexpected  = errors.New("mqtt: AUTH without enhanced authentication")
	errAuthFailed      = errors.New("mqtt: re-authentication failed")
	errAuthOtherMethod = errors.New("mqtt: re-authentication with another method [MQTT-4.12.1-1]")
)

// maxExpiry is the session expiry interval that means "never" (3.1.2.11.2).
const maxExpiry = 0xFFFFFFFF

// v5conn is what an MQTT 5 connection agreed on in CONNECT and CONNACK; nil for MQTT 3.1 and 3.1.1
// clients, so they pay nothing for it.
type v5conn struct {
	maxPacket uint32 // the client's Maximum Packet Size; 0 = no limit beyond the protocol's
	recvMax   uint16 // the client's Receive Maximum: bounds the QoS 1/2 messages in flight to it
	aliasMax  uint16 // the client's Topic Alias Maximum: the aliases the broker may assign it
	problems  bool   // reason strings and user properties allowed beyond PUBLISH, CONNACK, DISCONNECT
	// expiry is the session expiry interval in seconds, as granted (maxExpiry: never); 0 ends the session
	// with the connection. DISCONNECT may change it.
	expiry uint32
	// expiryChanged: DISCONNECT changed expiry, so the session's record must be written again.
	expiryChanged bool
	willDelay     uint32 // seconds
	// aliasesIn are the topic aliases the client set, index alias-1; grown as the client uses them, up
	// to the connector's topic_alias_maximum.
	aliasesIn []string
	// inflightIn counts the client's QoS 1/2 PUBLISH packets not yet acknowledged (PUBACK) or completed
	// (PUBCOMP): the Receive Maximum the broker announced bounds it. The writer decrements it.
	inflightIn atomic.Int32
	// authMethod is the enhanced authentication method of CONNECT; "" = none.
	authMethod string
	// reauth is the re-authentication exchange in progress, if any (auth.go).
	reauth virtualhost.AuthExchange
}

// connectV5 takes what CONNECT cp's properties ask for; the defaults are the specification's.
func (cl *client) connectV5(cp *packet.ConnectPacket) {
	v := &v5conn{recvMax: 65535, problems: true}
	if p := cp.Properties; p != nil {
		if p.ReceiveMaximum != nil {
			v.recvMax = *p.ReceiveMaximum
		}
		if p.MaximumPacketSize != nil {
			v.maxPacket = *p.MaximumPacketSize
		}
		if p.TopicAliasMaximum != nil {
			v.aliasMax = min(*p.TopicAliasMaximum, uint16(cl.lim.TopicAliasMaximum))
		}
		if p.RequestProblemInformation != nil {
			v.problems = *p.RequestProblemInformation != 0
		}
		if p.SessionExpiryInterval != nil {
			v.expiry = *p.SessionExpiryInterval
		}
		v.authMethod = p.AuthenticationMethod
	}
	if max := cl.lim.MaxSessionExpiry; max > 0 && time.Duration(v.expiry)*time.Second > max {
		v.expiry = uint32(max / time.Second)
	}
	if cp.WillFlag && cp.WillProperties != nil && cp.WillProperties.WillDelayInterval != nil {
		v.willDelay = *cp.WillProperties.WillDelayInterval
	}
	cl.v5 = v
}

// keepAlive returns the keep-alive the client must use, and whether CONNACK must tell it (Server Keep
// Alive: the connector caps what clients ask for, a keep-alive of 0 included).
func (cl *client) keepAlive(asked uint16) (uint16, bool) {
	max := cl.lim.MaxKeepAlive
	if cl.v5 == nil || max <= 0 {
		return asked, false
	}
	capped := uint16(max / time.Second)
	if asked == 0 || asked > capped {
		return capped, true
	}
	return asked, false
}

// connackProps are the properties of a successful MQTT 5 CONNACK: what the broker supports and enforces,
// so a client knows its limits before it sends anything.
func (cl *client) connackProps(assignedID string, keep uint16, tellKeep bool, askedExpiry uint32) *packet.Properties {
	v := cl.v5
	recvMax := uint16(cl.lim.ReceiveMaximum)
	aliasMax := uint16(cl.lim.TopicAliasMaximum)
	yes := byte(1)
	// Maximum QoS is absent: its presence would mean 0 or 1, and every QoS is supported [MQTT-3.2.2-9].
	p := &packet.Properties{
		ReceiveMaximum:                  &recvMax,
		TopicAliasMaximum:               &aliasMax,
		RetainAvailable:                 &yes,
		WildcardSubscriptionAvailable:   &yes,
		SubscriptionIdentifierAvailable: &yes,
		SharedSubscriptionAvailable:     &yes,
		AssignedClientIdentifier:        assignedID,
	}
	if mp := cl.lim.MaxMessageLength; mp > 0 && mp < 268_435_460 {
		size := uint32(mp)
		p.MaximumPacketSize = &size
	}
	if v.expiry != askedExpiry {
		granted := v.expiry
		p.SessionExpiryInterval = &granted // [MQTT-3.2.2-?]: the value the server uses
	}
	if tellKeep {
		p.ServerKeepAlive = &keep
	}
	return p
}

// responseInformation is what a client that asked for it may use as the start of its response topics:
// the connector's prefix and the client id, when the id makes a valid topic level.
func (cl *client) responseInformation(id string) string {
	for i := 0; i < len(id); i++ {
		switch id[i] {
		case '/', '+', '#', 0:
			return ""
		}
	}
	return cl.lim.ResponseTopicPrefix + id
}

// connackCode turns a 3.1.1 CONNACK return code into the MQTT 5 reason code of the same refusal.
func connackCode(version, code byte) byte {
	if version != packet.Version5 {
		return code
	}
	switch code {
	case connAccepted:
		return packet.ReasonSuccess
	case connBadVersion:
		return packet.ReasonUnsupportedProtocolVersion
	case connIDRejected:
		return packet.ReasonClientIdentifierNotValid
	case connServerUnavailable:
		return packet.ReasonServerUnavailable
	case connBadCredentials:
		return packet.ReasonBadUserNameOrPassword
	case connNotAuthorized:
		return packet.ReasonNotAuthorized
	}
	return code // already an MQTT 5 reason code
}

// reasonOf is the reason code of the server's DISCONNECT for the error that ends a connection, and
// whether one is sent at all (a connection that is gone, or a client that said DISCONNECT, gets none).
func reasonOf(err error) (byte, bool) {
	if rc, ok := recheckReason(err); ok {
		return rc, true
	}
	switch {
	case err == nil, errors.Is(err, protocol.ErrDisconnected), errors.Is(err, errClosing),
		errors.Is(err, errOutboundClosed), errors.Is(err, errTakenOver):
		return 0, false
	case errors.Is(err, errKeepAlive):
		return packet.ReasonKeepAliveTimeout, true
	case errors.Is(err, packet.ErrMalformed), errors.Is(err, packet.ErrProtocolViolation),
		errors.Is(err, packet.ErrPacketTooLarge), errors.Is(err, packet.ErrTooManyFilters):
		return packet.ReasonFor(err), true
	case errors.Is(err, errHostMessageLength):
		return packet.ReasonPacketTooLarge, true
	case errors.Is(err, errTopicAlias):
		return packet.ReasonTopicAliasInvalid, true
	case errors.Is(err, errReceiveMaximum):
		return packet.ReasonReceiveMaximumExceeded, true
	case errors.Is(err, errPayloadFormat):
		return packet.ReasonPayloadFormatInvalid, true
	case errors.Is(err, errInvalidTopic), errors.Is(err, errResponseTopic):
		return packet.ReasonTopicNameInvalid, true
	case errors.Is(err, errAuthFailed):
		return packet.ReasonNotAuthorized, true
	case errors.Is(err, errStoreWrite):
		return packet.ReasonImplementationSpecificError, true
	case errors.Is(err, protocol.ErrServerClosed):
		return packet.ReasonServerShuttingDown, true
	case errors.Is(err, errSecondConnect), errors.Is(err, errUnexpectedPacket), errors.Is(err, errUnknownAlias),
		errors.Is(err, errSessionExpiry), errors.Is(err, errSubIDInPublish), errors.Is(err, errNoLocalShared),
		errors.Is(err, errAuthUnexpected), errors.Is(err, errAuthOtherMethod), errors.Is(err, errAuthPacket), errors.Is(err, errBadShare):
		return packet.ReasonProtocolError, true
	}
	return packet.ReasonUnspecifiedError, true
}

// disconnect queues the server's DISCONNECT with reason code rc for an MQTT 5 connection, then closes it
// once flushed (die_delay at the latest) [MQTT-4.13.2-1]; an MQTT 3.1.1 connection is closed at once.
func disconnect(c *protocol.Conn, version, rc byte, reason error, dieDelay time.Duration) {
	if version != packet.Version5 {
		c.Close(reason)
		return
	}
	if b, ok := c.Begin(); ok {
		c.Commit(appendDisconnect(b, rc, reason))
	}
	c.CloseAfter(reason, dieDelay)
}

// appendDisconnect appends the server's MQTT 5 DISCONNECT with reason code rc, and the reason as its
// reason string unless rc is success.
func appendDisconnect(b []byte, rc byte, reason error) []byte {
	p := &packet.DisconnectPacket{ReasonCode: rc}
	if rc != packet.ReasonSuccess {
		p.Properties = &packet.Properties{ReasonString: reasonString(reason)}
	}
	return packet.Append(b, p, packet.Version5)
}

// reasonString is the human-readable reason sent with a refusal: the error's text, bounded so it never
// makes a packet large.
func reasonString(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// problem returns a reason string for err when the client accepts them on this packet, else "".
func (cl *client) problem(err error) string {
	if cl.v5 == nil || !cl.v5.problems {
		return ""
	}
	return reasonString(err)
}

// expiryOf is the session expiry, in seconds, of a session a client opens: MQTT 5 says it; in 3.1.1
// clean session ends it with the connection (0) and a persistent one never expires.
func (cl *client) expiryOf(clean bool) uint32 {
	switch {
	case cl.v5 != nil:
		return cl.v5.expiry
	case clean:
		return 0
	}
	return maxExpiry
}

// sessionExpiryChange applies a DISCONNECT's Session Expiry Interval: none may be set on a session that
// had 0 (3.14.2.2.2).
func (cl *client) sessionExpiryChange(p *packet.DisconnectPacket) error {
	if cl.v5 == nil || p.Properties == nil || p.Properties.SessionExpiryInterval == nil {
		return nil
	}
	e := *p.Properties.SessionExpiryInterval
	if cl.v5.expiry == 0 && e != 0 {
		return errSessionExpiry
	}
	if max := cl.lim.MaxSessionExpiry; max > 0 && time.Duration(e)*time.Second > max {
		e = uint32(max / time.Second)
	}
	cl.v5.expiryChanged = cl.v5.expiryChanged || e != cl.v5.expiry
	cl.v5.expiry = e
	return nil
}
