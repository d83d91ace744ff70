// Package protocol runs Lyre's connectors: listeners, the accept loop, protocol sniffing and the
// connection core shared by the MQTT and STOMP front-ends (DESIGN.md §1, §6; STYLE.md §2).
//
// Each accepted connection gets one goroutine. It prefetches at most SniffLimit bytes under the
// connector's detect_timeout, recognises the protocol with Sniff (unless the connector names one), then
// runs the protocol's Handler with a Conn that replays the sniffed bytes. Output goes through the Conn's
// outbound queue, bounded in bytes; a writer goroutine exists only while there is something to write,
// so an idle connection costs one parked goroutine, a small struct and a small read buffer.
//
// Decisions where the design is silent:
//   - A connection over max_connections is accepted and closed at once, so the client sees EOF instead
//     of waiting in the kernel backlog; refusals are logged at most once a second with a count.
//   - A connection that is still being sniffed when Shutdown starts is closed without a hook.
//   - After Shutdown's context ends the remaining connections are closed and Shutdown still waits for
//     their goroutines, which end promptly because their sockets are closed.
package protocol
