package packet

import "errors"

// CONNACK return codes of MQTT 3.1 and 3.1.1.
const (
	ConnAccepted                     byte = 0x00
	ConnRefusedUnacceptableProtocol  byte = 0x01
	ConnRefusedIdentifierRejected    byte = 0x02
	ConnRefusedServerUnavailable     byte = 0x03
	ConnRefusedBadUsernameOrPassword byte = 0x04
	ConnRefusedNotAuthorized         byte = 0x05
	SubackFailure                    byte = 0x80 // SUBACK return code of a refused subscription (3.1.1)
)

// MQTT 5 reason codes, section 2.4.
const (
	ReasonSuccess                             byte = 0x00 // also Normal disconnection, Granted QoS 0
	ReasonGrantedQoS1                         byte = 0x01
	ReasonGrantedQoS2                         byte = 0x02
	ReasonDisconnectWithWill                  byte = 0x04
	ReasonNoMatchingSubscribers               byte = 0x10
	ReasonNoSubscriptionExisted               byte = 0x11
	ReasonContinueAuthentication              byte = 0x18
	ReasonReAuthenticate                      byte = 0x19
	ReasonUnspecifiedError                    byte = 0x80
	ReasonMalformedPacket                     byte = 0x81
	ReasonProtocolError                       byte = 0x82
	ReasonImplementationSpecificError         byte = 0x83
	ReasonUnsupportedProtocolVersion          byte = 0x84
	ReasonClientIdentifierNotValid            byte = 0x85
	ReasonBadUserNameOrPassword               byte = 0x86
	ReasonNotAuthorized                       byte = 0x87
	ReasonServerUnavailable                   byte = 0x88
	ReasonServerBusy                          byte = 0x89
	ReasonBanned                              byte = 0x8A
	ReasonServerShuttingDown                  byte = 0x8B
	ReasonBadAuthenticationMethod             byte = 0x8C
	ReasonKeepAliveTimeout                    byte = 0x8D
	ReasonSessionTakenOver                    byte = 0x8E
	ReasonTopicFilterInvalid                  byte = 0x8F
	ReasonTopicNameInvalid                    byte = 0x90
	ReasonPacketIdentifierInUse               byte = 0x91
	ReasonPacketIdentifierNotFound            byte = 0x92
	ReasonReceiveMaximumExceeded              byte = 0x93
	ReasonTopicAliasInvalid                   byte = 0x94
	ReasonPacketTooLarge                      byte = 0x95
	ReasonMessageRateTooHigh                  byte = 0x96
	ReasonQuotaExceeded                       byte = 0x97
	ReasonAdministrativeAction                byte = 0x98
	ReasonPayloadFormatInvalid                byte = 0x99
	ReasonRetainNotSupported                  byte = 0x9A
	ReasonQoSNotSupported                     byte = 0x9B
	ReasonUseAnotherServer                    byte = 0x9C
	ReasonServerMoved                         byte = 0x9D
	ReasonSharedSubscriptionsNotSupported     byte = 0x9E
	ReasonConnectionRateExceeded              byte = 0x9F
	ReasonMaximumConnectTime                  byte = 0xA0
	ReasonSubscriptionIdentifiersNotSupported byte = 0xA1
	ReasonWildcardSubscriptionsNotSupported   byte = 0xA2
)

// ReasonFor maps a ReadPacket error to the MQTT 5 reason code a server sends in its
// DISCONNECT (or CONNACK, for a failed CONNECT) before closing: 0x81 malformed, 0x82 protocol
// error, 0x95 packet too large, 0x84 unsupported protocol version, 0x80 otherwise.
func ReasonFor(err error) byte {
	switch {
	case errors.Is(err, ErrMalformed):
		return ReasonMalformedPacket
	case errors.Is(err, ErrProtocolViolation):
		return ReasonProtocolError
	case errors.Is(err, ErrPacketTooLarge):
		return ReasonPacketTooLarge
	case errors.Is(err, ErrUnsupportedVersion):
		return ReasonUnsupportedProtocolVersion
	case errors.Is(err, ErrTooManyFilters):
		return ReasonQuotaExceeded
	}
	return ReasonUnspecifiedError
}

// reasonSet is a bitmap of the reason codes a packet type may carry.
type reasonSet [4]uint64

func newReasonSet(codes ...byte) reasonSet {
	var s reasonSet
	for _, c := range codes {
		s[c/64] |= 1 << (c % 64)
	}
	return s
}

func (s *reasonSet) has(c byte) bool { return s[c/64]&(1<<(c%64)) != 0 }

var (
	connackReasons = newReasonSet(0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
		0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)
	pubackReasons     = newReasonSet(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99) // and PUBREC
	pubrelReasons     = newReasonSet(0x00, 0x92)                                           // and PUBCOMP
	subackReasons     = newReasonSet(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
	subackReasons311  = newReasonSet(0x00, 0x01, 0x02, 0x80)
	unsubackReasons   = newReasonSet(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
	disconnectReasons = newReasonSet(0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8C, 0x8D,
		0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F,
		0xA0, 0xA1, 0xA2)
	authReasons = newReasonSet(0x00, 0x18, 0x19)
)
