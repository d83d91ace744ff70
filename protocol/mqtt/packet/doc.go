// Package packet is Lyre's MQTT codec: it decodes and encodes the control packets of MQTT 3.1
// (protocol level 3), 3.1.1 (level 4) and 5.0 (level 5). It holds no network code and does
// no logging; the session front-end in protocol/mqtt drives it.
//
// Reading: one Reader per connection. The Reader validates strictly, citing the normative
// statements ([MQTT-x.y.z-n]) it enforces, and reports failures as errors wrapping
// ErrMalformed, ErrProtocolViolation, ErrPacketTooLarge or ErrUnsupportedVersion; ReasonFor
// maps them to MQTT 5 reason codes. A packet larger than the Reader's limit is refused from
// its fixed header, before its body is read; a SUBSCRIBE or UNSUBSCRIBE listing more topic
// filters than SetMaxFilters allows stops decoding at the first one too many (ErrTooManyFilters).
// Decoded packets own all their memory.
//
// Checks that need session state are left to the caller: a second CONNECT, topic alias
// resolution, Subscription Identifiers in a client's PUBLISH, the client identifier rules,
// wildcard placement in topic filters (the router parses filters) and packet-identifier reuse.
// A Topic Alias of 0 is among them: the specification answers it with 0x94 (Topic Alias
// invalid), like an alias above the Topic Alias Maximum the session announced, so the session
// checks 1 <= alias <= maximum in one place and the codec passes the value through.
//
// Writing: Append, AppendPublish and AppendAck append to a caller's buffer and allocate
// nothing when it has room.
package packet
