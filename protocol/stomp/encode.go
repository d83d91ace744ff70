package stomp

import (
	"strconv"
)

// appendCommand starts a frame.
func appendCommand(dst []byte, cmd string) []byte {
	dst = append(dst, cmd...)
	return append(dst, '\n')
}

// appendHeader appends "name:value\n" with the escaping of version v (STOMP 1.2 "Value Encoding"):
// 0 (CONNECTED, or before CONNECT) and 1.0 escape nothing, 1.1 escapes \ LF and colon, 1.2 also CR.
// Without escaping, a header that cannot be written safely (colon in the name, EOL anywhere) is dropped,
// because writing it would corrupt the frame.
func appendHeader(dst []byte, v int, name, value string) []byte {
	if v < v11 {
		if !rawSafe(name, true) || !rawSafe(value, false) {
			return dst
		}
		dst = append(dst, name...)
		dst = append(dst, ':')
		dst = append(dst, value...)
		return append(dst, '\n')
	}
	dst = appendEscaped(dst, v, name)
	dst = append(dst, ':')
	dst = appendEscaped(dst, v, value)
	return append(dst, '\n')
}

// appendHeaderUint appends a numeric header; digits never need escaping.
func appendHeaderUint(dst []byte, name string, n uint64) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, n, 10)
	return append(dst, '\n')
}

// appendBody ends the headers and appends the body and the terminating NUL.
func appendBody(dst []byte, body []byte) []byte {
	dst = append(dst, '\n')
	dst = append(dst, body...)
	return append(dst, 0)
}

func rawSafe(s string, name bool) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\n', '\r':
			return false
		case ':':
			if name {
				return false
			}
		}
	}
	return true
}

func appendEscaped(dst []byte, v int, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case ':':
			esc = `\c`
		case '\r':
			if v < v12 {
				continue
			}
			esc = `\r`
		default:
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, esc...)
		start = i + 1
	}
	return append(dst, s[start:]...)
}

// oneLine makes text safe as an unescaped header value (ERROR message headers in 1.0).
func oneLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' || s[i] == '\r' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] == '\n' || b[j] == '\r' {
					b[j] = ' '
				}
			}
			return string(b)
		}
	}
	return s
}
