package stomp

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/lyremq/lyre/protocol"
)

// Close reasons that are not protocol errors.
var (
	// ErrDisconnect is the close reason after a client's DISCONNECT.
	ErrDisconnect = fmt.Errorf("stomp: %w", protocol.ErrDisconnected)
	// ErrHeartBeatTimeout closes a client silent for 1.5 times its negotiated heart-beat interval.
	ErrHeartBeatTimeout = errors.New("stomp: heart-beat timeout")
	// ErrConnectTimeout closes a connection whose CONNECT frame did not arrive within the detect timeout.
	ErrConnectTimeout = errors.New("stomp: no CONNECT frame in time")
	// ErrShutdown is the close reason when the broker shuts down.
	ErrShutdown = fmt.Errorf("stomp: %w", protocol.ErrServerClosed)
	// ErrOutboundFull closes a connection whose outbound queue cannot take a RECEIPT or ERROR frame: the
	// client is not reading.
	ErrOutboundFull = errors.New("stomp: outbound queue full")
	// ErrProtocol is wrapped by every protocol error the session answers with an ERROR frame.
	ErrProtocol = errors.New("stomp: protocol error")
)

// frameError is a protocol error: msg goes into the ERROR frame's message header, detail into its body.
type frameError struct {
	msg    string
	detail string
	hdrs   []string // extra ERROR headers, name/value pairs
	cause  error
}

func (e *frameError) Error() string {
	if e.detail != "" {
		return "stomp: " + e.msg + ": " + e.detail
	}
	return "stomp: " + e.msg
}

func (e *frameError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrProtocol, e.cause}
	}
	return []error{ErrProtocol}
}

func protoErr(msg, detail string, args ...any) *frameError {
	if len(args) > 0 {
		detail = fmt.Sprintf(detail, args...)
	}
	return &frameError{msg: msg, detail: detail}
}

// describe turns an error into an ERROR frame's message header and body.
func (s *session) describe(err error) (msg, detail string, hdrs []string) {
	var fe *frameError
	if errors.As(err, &fe) {
		return fe.msg, fe.detail, fe.hdrs
	}
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return "frame too large", fmt.Sprintf("a frame body may hold at most %d bytes (max_message_length)", s.cfg.MaxMessageLength), nil
	case errors.Is(err, ErrTooManyHeaders):
		return "too many headers", fmt.Sprintf("a frame may carry at most %d headers (max_headers)", s.cfg.MaxHeaders), nil
	case errors.Is(err, ErrHeaderTooLong):
		return "header too long", fmt.Sprintf("a header line may hold at most %d bytes (max_header_length)", s.cfg.MaxHeaderLength), nil
	case errors.Is(err, ErrMalformedHeader):
		return "malformed frame", "a header line must be name:value with a non-empty name", nil
	case errors.Is(err, ErrBadEscape):
		return "malformed frame", "a header holds an escape sequence STOMP " + versionString(s.version) + " does not define", nil
	case errors.Is(err, ErrBadContentLength):
		return "malformed frame", strings.TrimPrefix(err.Error(), "stomp: "), nil
	case errors.Is(err, ErrUnknownCommand):
		return "unknown command", strings.TrimPrefix(err.Error(), "stomp: "), nil
	case errors.Is(err, ErrMissingNUL):
		return "malformed frame", "the body of a frame with content-length must be followed by a NUL octet", nil
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed frame", "the stream ended inside a frame (missing NUL terminator?)", nil
	}
	return "internal error", err.Error(), nil
}

func versionString(v int) string {
	switch v {
	case v10:
		return "1.0"
	case v11:
		return "1.1"
	case v12:
		return "1.2"
	}
	return "1.0"
}
