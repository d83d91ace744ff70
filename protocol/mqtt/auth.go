package mqtt

// MQTT 5 enhanced authentication: the AUTH exchange in CONNECT and re-authentication.

import (
	"errors"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/virtualhost"
)

var errBadAuthMethod = errors.New("mqtt: authentication method not supported")

// enhancedAuth runs the authentication exchange a CONNECT asks for.
func (cl *client) enhancedAuth(host *virtualhost.Host, cp *packet.ConnectPacket, clientID string) (virtualhost.Principal, []byte, byte, error) {
	return virtualhost.Principal{}, nil, packet.ReasonBadAuthenticationMethod, errBadAuthMethod
}

// reauthenticate handles an AUTH packet after CONNACK: re-authentication with the method of CONNECT.
func (cl *client) reauthenticate(p *packet.AuthPacket) error {
	return errAuthUnexpected
}
