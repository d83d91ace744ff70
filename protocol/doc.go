// Package protocol runs Lyre's connectors: listeners, the accept loop, protocol sniffing and the
// connection core shared by the MQTT and STOMP front-ends (DESIGN.md §1, §6; STYLE.md §2).
//
// Each accepted connection gets a goroutine. It prefetches at most SniffLimit bytes under the
// connector's detect_timeout, recognises the protocol with Sniff (unless the connector names one), then
// runs the protocol's Handler with a Conn whose Reader replays the sniffed bytes. The handler answers
// CONNECT and hands its session to the connection core (Conn.Continue, a Stepper), which steps it packet
// by packet; between packets an idle connection parks without any goroutine (see "Idle connections").
// Output goes through the Conn's outbound queue, bounded in bytes (Server.MaxPending): encoders append in
// place between Begin and Commit, and a writer goroutine exists only while there is something to write.
// After a small read the next one goes into a 16-byte inline buffer, and a connection that parks gives its
// pooled buffer back, so an idle connection holds no read buffer (a busy one reads into 512 B up to
// 32 KiB, growing while reads fill it).
//
// # Idle connections
//
// DESIGN.md §1 budgets 4 KiB of broker memory per idle connection. A goroutine alone costs 2 KiB of
// stack (4 KiB once CONNECT handling grew it, which the runtime then shrinks only by halves) plus its
// runtime state, so the budget is met by not keeping one: between packets, with nothing buffered, a
// connection parks. Its socket goes into a per-Server epoll instance (park_linux.go), level-triggered and
// one-shot; that epoll descriptor is itself in Go's network poller, so one goroutine waits on it like any
// socket read and no thread blocks in epoll_wait. Input wakes the connection: a new goroutine steps it at
// once (a goroutine start, an epoll_ctl re-arm and a deadline wheel entry per wake), and it parks again when
// nothing more is buffered. The poller yields after each batch of 64 wakes, so a sweep of keep-alive
// pings over thousands of idle connections does not give them all a stack at the same moment.
//
// Decisions:
//   - The session is a Stepper: Step reads and handles one packet (MQTT) or frame (STOMP; heart-beat EOLs
//     already buffered are consumed and the connection parks again), Buffered reports what the
//     front-end's decoder holds, End ends the session. One goroutine at a time owns the reader: the
//     parked -> running handoff is one atomic compare-and-swap, so session state needs no lock for it.
//   - Read deadlines (keep-alive, heart-beats: SetReadDeadline, ArmReadDeadline) hold while parked: the
//     Server's deadline wheel (wheel.go; one sweep every 50 ms, not a timer per connection) wakes it at
//     most a tick after its deadline and the core makes Step's next read fail with
//     os.ErrDeadlineExceeded, the socket's own error. The front-ends arm the deadline after handling a
//     packet rather than before reading the next, since the connection may park in between.
//   - A busy connection (its last wait was under linger, 100 ms) first waits up to linger in a socket read,
//     so a stream of packets costs no park and wake each; an idle client's ping (a long wait) parks as
//     soon as it is answered. What a session queued with CommitDeferred is flushed before it parks.
//   - Conn.Close wakes a parked connection, whose Step then reads the closed socket's error and ends the
//     session as a Serve loop would; the Server's WaitGroup counts connections, not goroutines, and the
//     poller stops once Shutdown has seen every connection end.
//   - Deep one-off work runs Apart, on a goroutine of its own: MQTT's and STOMP's CONNECT handling and the
//     TLS handshake need 8 KiB of stack and more, which would stay with a goroutine that cannot park.
//   - What keeps its goroutine: TLS connections (crypto/tls buffers decrypted and raw input out of sight,
//     so an empty socket does not mean nothing is waiting), systems without epoll, handlers that do not
//     call Continue, and a WebSocket woken by a control frame alone (a ping), which waits in a socket
//     read for its next data frame.
//
// Measured (lyre-bench -mode idle, broker RSS growth per connection, 10,000 connections, in-memory host,
// Linux, Go 1.26, GOGC's default): MQTT over TCP 3.1 KiB (6.1 before parking), STOMP 3.0 KiB (9.2), MQTT
// and STOMP over WebSocket 4.2-4.7 KiB (9.4-9.6), over TLS 21 KiB (29-30: goroutine stack, tls.Conn, its
// record buffers and AES-GCM state). The live heap of an idle MQTT connection is 2.0 KiB (exact heap profile):
// Conn 448 B, its reader 144 B, MQTT client 288 B, packet reader 80 B, session 448 B and its registry
// entry, the socket (netFD and addresses, about 290 B). RSS adds the garbage collector's headroom, which
// the lyre command keeps to a quarter of a large, quiet heap (cmd/lyre, "Garbage collector").
// TestIdleMQTTConnectionMemory and TestIdleSTOMPConnectionMemory guard it: 1000 idle connections each,
// no goroutine per connection, at most 4 KiB of heap and stack each, client side included.
//
// Held at 19,000 connections (this machine's open-file limit is 20,000 per process) with pings every
// 15 s: the broker keeps 9-14 goroutines and 74 MiB RSS after connecting (MQTT; 140 MiB and 19,008
// goroutines before parking), settling at 85 MiB (3.5 KiB per connection) as the pings' garbage waits
// for collection (98-106 MiB with GOGC's default). STOMP with heart-beats both ways settles at 3.3 KiB.
// CPU at rest (1,270 pings a second) is 3.8-3.9% of one core for MQTT and 5.1% for STOMP; with a goroutine
// per connection it was 1.9-2.9% and 4.0%: a wake costs a goroutine start and an epoll_ctl where a
// parked goroutine cost a netpoll wake-up.
//
// TLS: a connector whose Bind starts with "tls://" speaks TLS only; one whose Detect lists TLS ("tls")
// recognises a ClientHello's record header (0x16 0x03 0x00-0x04, three bytes) next to clear-text MQTT
// and STOMP on the same port. Either way the handshake and the sniff inside it share detect_timeout, and
// inside TLS the connector's other protocols are sniffed again (or its one protocol is used). The
// certificate, key and client CA files are loaded at Listen; ReloadCertificates swaps the tls.Config new
// handshakes use (an atomic pointer read once per accepted connection), so established connections keep
// theirs. Conn.TLS, ServerName and CertIdentity expose the handshake to the front-ends. The handshake
// runs Apart, so the connection's goroutine, which a TLS connection keeps while idle (see "Idle
// connections"), keeps a small stack. An idle TLS connection costs more than a clear one: crypto/tls
// keeps its record buffers (sized by the largest record seen) and cipher state (TestIdleTLSConnMemory
// measures about 21 KiB per connection, client side included).
//
// A handshake costs far more than the CONNECT inside it: on a 2-core test machine a loopback client
// made about 10000 clear-text MQTT connections a second, against 500-900 full TLS handshakes (RSA-2048
// or ECDSA P-256 certificates; TLS 1.3 also pays the X25519MLKEM768 key exchange Go offers by default).
// Session tickets are left on, as crypto/tls has them (TestTLSSessionResumption): a client that keeps its
// session skips the certificate signature, which a TLS 1.2 resumption turns into about 3000 connections
// a second; TLS 1.3 resumption still runs the key exchange. The ticket keys are crypto/tls's own, per
// tls.Config: a restart or ReloadCertificates makes every client's next handshake a full one.
//
// # WebSocket
//
// HTTP is a layer like TLS: a connector that lists "http" in detect (or binds ws:// or wss://, which
// sniff nothing else) recognises a request method and its space ("GET ", ...; not CONNECT, which
// STOMP owns) and serves the request on the connection's own goroutine (websocket.go). No net/http
// server runs for upgrades: http.ReadRequest reads the head, bounded by max_header_bytes (431 beyond it), and the
// whole exchange by upgrade_timeout. A WebSocket upgrade (RFC 6455, gorilla/websocket) is accepted when
// its Origin is allowed (allowed_origins; empty: the request's own host, and clients that send no
// Origin; "*": any) and it names a front-end the connector speaks: by sub-protocol (mqtt, mqttv3.1;
// v12.stomp, v11.stomp, v10.stomp, stomp: the first the client offers that the connector speaks, echoed
// back), else by path (mqtt_path, stomp_path). Everything else is refused with a complete response and
// closed: 404 elsewhere, 426 for a plain request to an endpoint, 403 for an origin, 400 for a bad or
// unknown upgrade or sub-protocol, logged like detection failures ("http request refused", at most once
// a second per connector). Inside TLS the sniff runs again, so one port serves raw MQTT, raw STOMP, TLS,
// ws and wss.
//
// The opening handshake is gorilla/websocket's (Upgrader). After it the front-end reads and writes a
// wsConn (wsframe.go), which frames the stream itself: gorilla's connection would keep a read buffer, a
// mutex channel and handler closures for the connection's life and park its reader deep in its frame
// code, about 2 KiB per idle connection that framing here does not cost. A wsConn is a WebSocket seen
// as a byte stream: an MQTT packet or STOMP frame may span messages and a message may hold several;
// text and binary messages are both read; pings are answered with pongs, a close is echoed and reads
// as EOF; framing errors (unmasked frame, reserved bits, a stray continuation, a fragmented or long
// control frame, an unknown opcode) close with 1002. Each write (one outbound batch) is one message,
// binary for MQTT, text for STOMP when it is valid UTF-8, written with one writev. Everything else is
// the TCP path unchanged: limits, die_delay, keep-alive and heart-beats (read deadlines are the
// socket's), access rules, back-pressure. A message larger than the front-end's max_message_length plus
// 64 KiB (frame and packet headers) closes the connection with 1009. Close sends a close frame unless a
// write holds the socket, waiting 100 ms at most. The virtual host may come from the HTTP Host header
// (Conn.HTTPHost), after MQTT's connector, user@host and SNI, and for STOMP when CONNECT has no host
// header.
//
// Idle cost: the handshake runs on a short-lived goroutine with pooled buffers; wsConn is the front-end's
// reader itself (with ReadByte), reading the socket through its own adaptive connReader (16 inline bytes
// while idle, a pooled buffer while busy), so there is one buffered reader per connection, as for TCP.
// A WebSocket over TCP parks as TCP does (the core checks the wsConn's connReader for buffered bytes; wss
// keeps its goroutine, as TLS does). Broker RSS per idle connection (lyre-bench -mode idle, 10,000) is
// 4.2-4.7 KiB against 3.0-3.3 KiB for TCP: the wsConn (192 B) and the handshakes' garbage, which an idle
// broker does not collect soon.
//
// # Management
//
// On a connector with management on, an HTTP request that is not a WebSocket upgrade (and not for
// mqtt_path or stomp_path, which answer 426) goes to the handler set with Server.SetManagement (the
// REST API, metrics and console of protocol/management). The bytes read while routing it are replayed
// and the connection is handed to one net/http server per Server (manage.go), which serves it and later
// requests on it (keep-alive, pipelining) and closes it; it holds its connector slot until then, and
// ConnectorOf tells the handler which connector a request came through. A WebSocket request on such a
// kept-alive connection is answered 426 with the connection closed, so the client retries on a new one.
//
// For management each connection keeps uncontended atomic counters (Traffic: socket bytes counted by
// its reader and writer, messages counted by its front-end with CountIn and CountOut, and CountDropped
// for messages a front-end dropped because the client did not keep up), and a front-end
// attaches a Session once its client has logged in (virtual host, user, client id, subscriptions).
// Server.Connections lists live connections, Server.Disconnect ends one (ErrKicked: to MQTT this is a
// dropped connection, so a will is published), and Server.ConnectorStats adds up each connector's
// traffic by protocol and virtual host, ended connections included, with refusals by reason. Nothing
// here is per message beyond the atomic adds, and nothing is labelled per client.
//
// # Reload
//
// A configuration reload (cmd/lyre) changes a running server without dropping what it keeps:
//   - Connectors: Listen binds a new one, CloseConnector stops a removed one (its listener closes, its
//     connections get their OnShutdown goodbye, the one Shutdown gives, and close within die_delay),
//     and a changed one is both; Connectors lists what runs, as given to Listen, for the reload to compare
//     with; CheckConnector checks a new one (protocols, grammars, TLS files) before anything changes.
//     ReloadCertificates still swaps the certificates of the others in place. Another connector's
//     connections are never touched.
//   - Connections: after the hosts took their new settings, Server.Recheck runs the hook each front-end
//     registered with OnRecheck once its client logged in. Recheck (the function) decides, once for both
//     front-ends, from the host's settings now: the host was removed (ErrHostRemoved); the user was
//     removed or may no longer connect (virtualhost.Refresh); a subscription may no longer be held,
//     reading re-checked as at SUBSCRIBE (ErrRevoked, with the subscriptions to remove); a subscription
//     now allowed only in part has no gate to narrow it, or its gate decides for groups the user no
//     longer has (ErrAccessChanged). A gated subscription whose rules changed needs nothing: its gate
//     follows the rules (virtualhost.Gate). A client whose groups changed and that goes on adopts its new
//     principal on its reader before its next packet or frame, where every send and subscribe check runs.
//
// Why a hook run on the reload's goroutine, and not work posted to the reader: the reader parks in a
// socket read, and the only way to wake it, a read deadline, may cut a packet in half; a connection
// that goes on must never lose its stream. So the hook does only what is safe beside the reader: it reads
// the session's subscriptions under the session's lock, queues the goodbye (Begin/Commit, as OnShutdown
// does) and calls CloseAfter, which stops all output at once, so nothing more is delivered to a revoked
// subscription. What only the reader may do (removing a subscription from the router and the session, as
// an UNSUBSCRIBE would, when the session outlives the connection) is posted with an atomic and done by
// the reader as the connection ends. Every outcome that needs the reader ends the connection, in every
// protocol (MQTT 3.x has no other way to tell, STOMP closes after ERROR, MQTT 5 is told with DISCONNECT),
// so no live state ever changes under the reader's feet. A hook registered after a Recheck started (a
// login running during the reload) runs at once (OnRecheck). Recheck returns the connections closing, so
// the reload waits for them (WaitGone) before it closes a removed host's router and store.
//
// # The session toolkit
//
// What the MQTT and STOMP front-ends both need lives here, once: per-connector Settings built at Listen
// (conf's defaults applied, grammars compiled); Login, LoginAuth (the same after an enhanced-authentication
// exchange such as MQTT 5 SCRAM-SHA-256) and Access (authentication, the connect permission, slot
// accounting, throttled refusals, send and subscribe checks with virtualhost's typed actions); AckQueue (acknowledgements sent in packet order once the writes they wait for are durable,
// with one overflow policy: at MaxPendingAcks the reader stops reading); Consumers (queue consumers
// resumed when the connection drains); and back-pressure on publishers (pace.go: Brake, HoldFor, Pace),
// because delivery never blocks. Each front-end keeps only its wire format and session state machine.
//
// # Locking
//
// One lock order for every front-end, outermost first:
//
//	router (durable subscriptions, trie, queue map, queue) -> front-end session state -> Conn outbound
//
// The router calls Sink.Deliver with a queue lock held; a sink takes its session's lock, then the
// connection's outbound lock (Begin ... Commit). Nothing takes them the other way: a front-end never
// calls the router, the store or another connection's Begin while holding its session lock or an
// outbound lock, and between Begin and Commit it only encodes. The OnDrain and OnShutdown hooks run
// without the outbound lock and may call Begin and the router. The OnRecheck hook runs on the reload's
// goroutine without the outbound lock: it may take the session's lock and Begin, never the router. The
// store's committer reports on its own
// goroutine and never takes a session lock (a front-end that must update session state from a write's
// outcome does it on a goroutine of its own). Helper locks (AckQueue, Consumers, pacer) are leaves:
// nothing is taken while holding them except the outbound lock (AckQueue.Flush encodes under it).
//
// Logging: one Info line per listening connector; one line per closed connection, at Debug when the
// reason is ordinary (EOF, reset, handler done, a reason wrapping ErrDisconnected or ErrServerClosed; a
// WebSocket's close frame or lost socket is EOF),
// Warn for a slow consumer, Info otherwise (protocol errors). Detection failures (unknown protocol,
// HTTP on a broker port, detect timeout, TLS handshake failure) are logged at Info, at most once a second per connector and
// kind; max_connections refusals at Warn, also at most once a second.
//
// Decisions where the design is silent:
//   - A connection over max_connections is accepted and closed at once, so the client sees EOF instead
//     of waiting in the kernel backlog; refusals are logged at most once a second with a count.
//   - Zero values in conf.Connector mean the conf defaults (detect_timeout 5s, max_connections 10000).
//   - A message is never split nor refused for its size: MaxPending bounds the bytes queued beyond the
//     largest message queued, so a message larger than MaxPending enters a queue still writing another
//     one (DESIGN.md §5: one message larger than a window is still delivered; the window bounds what is
//     queued beyond it). A connection then holds at most MaxPending plus its two largest messages.
//     Back-pressure measures the same window (Conn.CommitOver, Room).
//   - The write deadline applies to each write of at most 256 KiB: it measures a stalled peer, not the
//     time a large backlog takes.
//   - A connection that is still being sniffed when Shutdown starts is closed without a hook.
//   - client_auth "request" or "require" needs client_ca_file: an unverified certificate proves nothing,
//     so CertIdentity is only ever taken from a verified chain.
//   - client_auth applies to TLS connections: an autodetecting connector with "require" still serves
//     clear text (the point of detecting TLS), and says so in a warning at Listen.
//   - Closing a TLS connection closes the socket without a close_notify alert: tls.Conn.Close can block
//     for seconds sending it to a peer that does not read, and MQTT and STOMP end sessions in-band.
//   - A failed handshake (garbage record, missing or untrusted client certificate, clear text on a
//     tls:// port) is logged like other detection failures, "tls handshake failed", at most once a second.
//   - After Shutdown's context ends the remaining connections are closed and Shutdown still waits for
//     their goroutines, which end promptly because their sockets are closed.
package protocol
