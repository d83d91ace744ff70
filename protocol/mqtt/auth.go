package mqtt

// MQTT 5 enhanced authentication (section 4.12): the AUTH exchange between CONNECT and CONNACK, and
// re-authentication on a connected client. The methods are the host's (virtualhost.Authenticator);
// this file only carries their data in AUTH packets and checks what the protocol requires around them.

import (
	"errors"
	"fmt"
	"time"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/virtualhost"
)

var (
	errBadAuthMethod = errors.New("mqtt: authentication method not supported")
	errAuthPacket    = errors.New("mqtt: AUTH packet out of turn")
	errAuthOtherUser = errors.New("mqtt: re-authentication proved another user")
)

// enhancedAuth runs the exchange a CONNECT with an Authentication Method asks for: the client's data
// goes to the method, each answer that does not end it goes back in AUTH 0x18, and the client's next
// AUTH 0x18 is read here, before CONNACK [MQTT-4.12.0-1]. It returns the principal, the method's last
// data (for CONNACK's Authentication Data), and on refusal the CONNACK reason code. The whole exchange
// must end within the connect timeout, as a plain CONNECT must arrive within it.
func (cl *client) enhancedAuth(host *virtualhost.Host, cp *packet.ConnectPacket, clientID string) (virtualhost.Principal, []byte, byte, error) {
	method := cl.v5.authMethod
	if err := protocol.CheckRoom(cl.c, host, cp.Username, clientID, &cl.h.refusals); err != nil {
		return virtualhost.Principal{}, nil, loginCode(err), err
	}
	x, ok := host.StartAuth(method)
	if !ok {
		// [MQTT-4.12.0-4] without an exchange there is no password to guess, so no throttle either.
		cl.h.refusals.Logins.Add(1)
		return virtualhost.Principal{}, nil, packet.ReasonBadAuthenticationMethod, fmt.Errorf("%w: %q", errBadAuthMethod, method)
	}
	data := cp.Properties.AuthenticationData
	deadline := time.Now().Add(cl.connectWait())
	for {
		out, done, err := x.Step(data)
		if done {
			p, err := protocol.LoginAuth(cl.c, host, x, err, clientID, &cl.h.refusals)
			if err != nil {
				return p, nil, loginCode(err), err
			}
			return p, out, 0, nil
		}
		if !cl.writePacket(authPacket(packet.ReasonContinueAuthentication, method, out)) {
			return virtualhost.Principal{}, nil, packet.ReasonUnspecifiedError, errOutboundClosed
		}
		_ = cl.c.SetReadDeadline(deadline)
		next, err := cl.rd.ReadPacket()
		if err != nil {
			return virtualhost.Principal{}, nil, decodeReason(err), cl.readError(err, errConnectTimeout)
		}
		if _, bye := next.(*packet.DisconnectPacket); bye {
			return virtualhost.Principal{}, nil, 0, errDisconnectRequest // the client gave up: nothing to answer
		}
		a, isAuth := next.(*packet.AuthPacket)
		if !isAuth || a.ReasonCode != packet.ReasonContinueAuthentication || authMethodOf(a) != method {
			// [MQTT-3.1.2-30] only AUTH (or DISCONNECT) before CONNACK, and with CONNECT's method [MQTT-4.12.0-5].
			return virtualhost.Principal{}, nil, packet.ReasonProtocolError, fmt.Errorf("%w: %s during authentication", errAuthPacket, next.Type())
		}
		data = authDataOf(a)
	}
}

// decodeReason is the CONNACK reason code for a read that failed during CONNECT: the decoder's for a bad
// packet, 0 (no CONNACK: nobody to answer) for a timeout or a closed connection.
func decodeReason(err error) byte {
	if rc := packet.ReasonFor(err); rc != packet.ReasonUnspecifiedError {
		return rc
	}
	return 0
}

// connectWait is how long a client has to finish CONNECT: the connector's detect timeout, else
// connectTimeout.
func (cl *client) connectWait() time.Duration {
	if dl := cl.c.Connector().DetectTimeout; dl > 0 {
		return dl
	}
	return connectTimeout
}

// reauthenticate handles an AUTH packet after CONNACK [MQTT-4.12.1]: 0x19 starts a new exchange with the
// connection's method, 0x18 continues the one in progress. A connection that did not authenticate with
// a method, another method, or an AUTH out of turn is a protocol error [MQTT-4.12.1-1]. The exchange
// must prove the user the connection already is, and that user must still be allowed to connect:
// otherwise DISCONNECT 0x87, never a change of identity. Success is AUTH 0x00 with the method's last
// data. The connection keeps its slot (see virtualhost's package doc) and goes on working throughout
// [MQTT-4.12.1-2].
func (cl *client) reauthenticate(p *packet.AuthPacket) error {
	v := cl.v5
	if v == nil || v.authMethod == "" {
		return errAuthUnexpected
	}
	if authMethodOf(p) != v.authMethod {
		return errAuthOtherMethod
	}
	switch {
	case p.ReasonCode == packet.ReasonReAuthenticate && v.reauth == nil:
		x, ok := cl.host.StartAuth(v.authMethod)
		if !ok { // the host no longer offers the method (its users file changed)
			return fmt.Errorf("%w: %w %q", errAuthFailed, errBadAuthMethod, v.authMethod)
		}
		v.reauth = x
	case p.ReasonCode == packet.ReasonContinueAuthentication && v.reauth != nil:
	default:
		return fmt.Errorf("%w: reason 0x%02X", errAuthPacket, p.ReasonCode)
	}
	out, done, err := v.reauth.Step(authDataOf(p))
	if !done {
		if !cl.writePacket(authPacket(packet.ReasonContinueAuthentication, v.authMethod, out)) {
			return errOutboundClosed
		}
		return nil
	}
	x := v.reauth
	v.reauth = nil
	if err == nil && x.User() != cl.principal.User {
		err = fmt.Errorf("%w %q", errAuthOtherUser, x.User())
	}
	if err != nil {
		cl.h.refusals.Logins.Add(1)
		return fmt.Errorf("%w: %w", errAuthFailed, err)
	}
	principal, _, err := cl.host.LoginAuth(cl.c.RemoteAddr(), x, nil, cl.sess.id)
	if err != nil { // the user may no longer connect
		cl.h.refusals.Logins.Add(1)
		return fmt.Errorf("%w: %w", errAuthFailed, err)
	}
	cl.sess.mu.Lock()
	cl.principal = principal // same user; its groups may have changed with the users file
	cl.sess.mu.Unlock()
	if !cl.writePacket(authPacket(packet.ReasonSuccess, v.authMethod, out)) {
		return errOutboundClosed
	}
	return nil
}

// authPacket is an AUTH with reason code rc for method, carrying data when there is some.
func authPacket(rc byte, method string, data []byte) *packet.AuthPacket {
	return &packet.AuthPacket{ReasonCode: rc, Properties: &packet.Properties{AuthenticationMethod: method, AuthenticationData: data}}
}

// authDataOf is the Authentication Data of AUTH p (nil if it has none).
func authDataOf(p *packet.AuthPacket) []byte {
	if p.Properties == nil {
		return nil
	}
	return p.Properties.AuthenticationData
}

// authMethodOf is the Authentication Method of AUTH p ("" if it has none).
func authMethodOf(p *packet.AuthPacket) string {
	if p.Properties == nil {
		return ""
	}
	return p.Properties.AuthenticationMethod
}
