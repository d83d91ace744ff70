// Command lyre-bench is Lyre's load generator. It drives any broker address (Lyre, mosquitto, ActiveMQ,
// RabbitMQ) and depends on no Lyre package, so every broker is measured by the same client. -proto picks
// MQTT 3.1.1 or STOMP 1.2, each spoken by a client of its own (see below).
//
// Modes:
//
//	fanin      -pubs N (default 8) publishers -> -subs subscribers (default 1), all on one topic
//	fanout     -pubs publishers (default 1) -> -subs M subscribers (default 8), all on one topic
//	pairs      -pubs N (default 8) publisher/subscriber pairs, each pair on its own topic
//	queue      STOMP: -pubs N (default 4) producers -> one queue -> -subs M (default 4) consumers; each
//	           message goes to one consumer, acknowledged per -ack (default client-individual)
//	mqtt2stomp MQTT publishers (fanin) -> STOMP subscribers on the same topic: a/b is /topic/a.b
//	idle       -conns N idle connections; with -pid, the broker's RSS growth per connection (start the
//	           broker afresh: memory left over from an earlier run makes the "before" figure meaningless).
//	           They are held for -duration and kept alive every half -keepalive: MQTT with PINGREQ (each
//	           PINGRESP awaited), STOMP with a heart-beat EOL (CONNECT asks heart-beats both ways every
//	           -keepalive; the broker's are read and dropped, and a connection it closed counts as dropped)
//	soak       QoS 1 fanin traffic, every message counted, while -storms storms of -conns connections (10,000)
//	           come and go, half of them misbehaving; the broker's RSS, goroutines and connections (-pid,
//	           -metrics) must come back to their baseline afterwards (soak.go)
//
// -transport tls carries every connection of the run inside TLS, verified against the system's roots,
// -cafile, or not at all with -insecure.
//
// -transport ws or wss carries every connection of the run (publishers, subscribers, idle) over WebSocket
// (RFC 6455) instead of TCP: ws://ADDR/PATH with PATH from -ws-path (default /mqtt for MQTT, /stomp for
// STOMP), sub-protocol mqtt, or v12.stomp, v11.stomp and v10.stomp. wss adds TLS, verified against the
// system's roots, -cafile, or not at all with -insecure. MQTT goes in binary messages and STOMP in text
// messages, one per write batch; packets and frames from the broker may span and share messages.
//
// Topics are <-topic>/<run id>/fanin, .../fanout and .../pair/<i> (STOMP: -dest-prefix, then the same levels
// joined with '.'), so concurrent runs against one broker do not see each other's messages. Subscribers are
// subscribed (SUBACK, or the SUBSCRIBE's RECEIPT) before any publisher starts.
//
// STOMP producers get no acknowledgement unless they ask: -receipt-every K asks a RECEIPT every K SENDs and
// keeps at most -inflight of them outstanding, which is both flow control and (with -persistent) the
// broker's durability confirmation. Without it a producer writes as fast as TCP takes the bytes.
//
// Every payload starts with the send time (8 bytes, Unix nanoseconds) and a tag (8 bytes: publisher number
// in the top 24 bits, sequence number below). Subscribers take end-to-end latency from the first and detect
// loss and reordering from the second. At full speed latency includes up to maxBatchDelay (1 ms) of
// client-side write batching and -coalesce (1 ms) of read batching; with a -rate the broker keeps up with,
// neither applies, so use -rate to measure latency below saturation.
//
// The received rate is measured at the subscribers over a steady window: from -warmup after the first
// publish (at most a fifth of -duration) until the last publisher stops. Messages still arriving after that
// count as received (and against loss) but not in the rate. At QoS >= 1 (MQTT subscribers) and on STOMP
// queues a lost message is an error (exit 1); topic subscribers may lose messages when they fall behind.
// Ctrl-C stops the run and prints what was measured so far (exit 130); a second Ctrl-C kills it.
//
// Examples:
//
//	lyre-bench -addr 127.0.0.1:1883 -mode fanin -qos 1 -duration 10s
//	lyre-bench -mode fanout -subs 50 -rate 1000 -size 256 -json
//	lyre-bench -mode idle -conns 10000 -pid $(pgrep -n lyre)
//	lyre-bench -transport ws -addr 127.0.0.1:1883 -mode idle -conns 10000 -pid $(pgrep -n lyre)
//	lyre-bench -proto stomp -transport tls -cafile ca.pem -addr localhost:61614 -mode idle -conns 5000 -pid $(pgrep -n lyre)
//	lyre-bench -proto stomp -addr 127.0.0.1:61613 -mode queue -prefetch 100 -receipt-every 100 -inflight 4
//	lyre-bench -proto stomp -addr 127.0.0.1:61620 -vhost / -login guest -passcode guest -mode fanin
//
// # The MQTT client
//
// A deliberately small MQTT 3.1.1 client made for throughput: one reader goroutine per connection parses
// packets in place from its own buffer, writes go through a bufio.Writer that is flushed in batches, and the
// publish path reuses one payload buffer, so no allocation happens per message. It speaks only what the bench
// needs: CONNECT, SUBSCRIBE, PUBLISH at QoS 0/1/2 with their acknowledgements, PINGREQ and DISCONNECT.
//
// # The STOMP client
//
// A small STOMP 1.2 client made for throughput, built like the MQTT one: one reader goroutine per connection
// parses frames in place from its own buffer, writes go through a bufio.Writer flushed in batches, SEND
// frames are a precomputed prefix plus the reused payload buffer, and acknowledgements echo the broker's raw
// (still escaped) id bytes, so no allocation happens per message. It speaks only what the bench needs:
// CONNECT, SUBSCRIBE with a receipt, SEND (optionally persistent, optionally asking a receipt), MESSAGE, ACK,
// RECEIPT, ERROR and DISCONNECT. Heart-beats are declined (heart-beat:0,0): brokers then never time the
// connection out and send no EOLs, although the reader skips EOLs between frames anyway.
//
// # WebSocket
//
// The clients run unchanged on a net.Conn adapter over a gorilla/websocket connection (wsconn.go). gorilla
// breaks a connection for good after a read times out, while the clients use read deadlines as timers (a
// subscriber pings when its deadline passes). So the adapter reads ahead itself: it buffers each message
// whole, under the caller's deadline, before gorilla parses it, and gorilla never waits on the socket. A
// timeout then loses nothing, as on TCP. Per message gorilla allocates a reader and a writer; a ping from
// the broker is answered when the next message has arrived.
package main
