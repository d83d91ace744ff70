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
//	connect    new clients as fast as they come: -conns loops (default 16) each dial, CONNECT, wait for the
//	           CONNACK (STOMP: CONNECTED), DISCONNECT and close, again and again for -duration; reports
//	           connects/s and the dial-to-CONNACK latency. Each attempt has a client id of its own
//	           (-fresh-ids=false: one per loop), so none takes over a session. -user/-pass (STOMP
//	           -login/-passcode) log in; -transport tls measures the TLS handshake too. Any refusal or
//	           failed attempt is an error (exit 1).
//
// -pub-addr and -sub-addr (fanin, fanout, pairs) spread the publishers and the subscribers over several
// brokers, the nodes of a cluster: comma-separated addresses, client i on the (i mod n)th; either defaults
// to -addr. A subscription made on one node reaches the others' after a moment (a cluster propagates
// interest asynchronously), so -sub-wait waits that long between the last SUBACK and the first publish;
// without it the first messages may find no route to remote subscribers and count as lost.
//
// -transport tls carries every connection of the run over TLS, verified against the system's roots,
// -cafile, or not at all with -insecure; no session is resumed, so each connection makes a full handshake.
// -transport ws or wss carries them over WebSocket (RFC 6455) instead of TCP: ws://ADDR/PATH with PATH from
// -ws-path (default /mqtt for MQTT, /stomp for STOMP), sub-protocol mqtt, or v12.stomp, v11.stomp and
// v10.stomp. wss adds TLS, verified as with tls. MQTT goes in binary messages and STOMP in text messages,
// one per write batch; packets and frames from the broker may span and share messages.
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
//	lyre-bench -mode connect -transport tls -cafile ca.pem -user bench -pass secret -duration 5s
//	lyre-bench -transport ws -addr 127.0.0.1:1883 -mode idle -conns 10000 -pid $(pgrep -n lyre)
//	lyre-bench -proto stomp -transport tls -cafile ca.pem -addr localhost:61614 -mode idle -conns 5000 -pid $(pgrep -n lyre)
//	lyre-bench -proto stomp -addr 127.0.0.1:61613 -mode queue -prefetch 100 -receipt-every 100 -inflight 4
//	lyre-bench -proto stomp -addr 127.0.0.1:61620 -vhost / -login guest -passcode guest -mode fanin
//	lyre-bench -mode fanout -subs 100 -sub-addr 127.0.0.1:62701,127.0.0.1:62702,127.0.0.1:62703 -pub-addr 127.0.0.1:62701 -sub-wait 1s
//
// # compare
//
// lyre-bench compare measures Lyre and mosquitto side by side with one command:
//
//	go run ./cmd/lyre-bench compare                 # every scenario, 5 s each, median of 3 runs per broker
//	go run ./cmd/lyre-bench compare -curve          # latency against offered load, for the README
//	go run ./cmd/lyre-bench compare -list           # the scenarios, their ids and lyre-bench flags
//	go run ./cmd/lyre-bench compare -only 'connect' -duration 10s
//
// It starts both brokers itself on free loopback ports, each with a configuration it writes into a
// temporary directory (removed afterwards; -keep keeps it, with the brokers' logs), and stops them at the
// end. Lyre is -lyre, or a lyre binary next to lyre-bench, or else built with go build ./cmd/lyre from the
// module around the working directory; it keeps everything in memory, with an MQTT-only port, an
// autodetecting port for STOMP, an MQTT-over-TLS port and a users file holding a bcrypt hash made by lyre
// passwd. mosquitto is -mosquitto (/usr/sbin/mosquitto): persistence false and max_queued_messages 0, so
// that it keeps and delivers every message as Lyre does instead of dropping past 1000 queued, and
// max_inflight_messages 0, without which it disconnects publishers with more than 20 QoS 2 messages in
// flight; a TLS listener with the same certificate (ECDSA P-256, made by compare) and a password file made
// by mosquitto_passwd. When mosquitto is not installed, Lyre runs alone and the table says so.
//
// Each scenario is an ordinary lyre-bench run (100 B payloads, -duration), made in this process by the
// mode's own code: fan-in 8→1 at QoS 0, 1 (0 lost is its goal) and 2, fan-out 1→100 at QoS 0, 50 QoS 1
// pairs, QoS 1 fan-in paced at 80k and 120k msg/s offered (p50, p99, p99.9 latency; "achieved" marks a
// broker below 95% of the offered rate), STOMP fan-in without receipts and MQTT QoS 1 to STOMP client-ack
// subscribers (Lyre, and -stomp-peer brokers), the broker's RSS per idle MQTT connection (-idle-conns, each
// broker started afresh; the goal is 4 KiB), and the connection rate of -conns loops plain, over TLS and
// logging in with a password. The brokers take turns: run r of a scenario starts with a different broker
// than run r-1, and the table gives each broker's median, the ratio Lyre ÷ mosquitto and the goal, if any,
// with ✓ or ✗. A failed run shows as "error", is listed under the table and makes the exit status 1.
//
// -stomp-peer NAME=ADDR[,LOGIN,PASSCODE][,vhost=HOST][,mqtt=ADDR] adds a column for a STOMP broker already
// running, such as RabbitMQ or ActiveMQ, to the STOMP rows: the STOMP fan-in, and MQTT to STOMP when mqtt=
// names the broker's MQTT port. The CONNECT host header is HOST, "/" by default (RabbitMQ's virtual host;
// ActiveMQ ignores it). For example -stomp-peer rabbitmq=127.0.0.1:61613,guest,guest.
//
// -curve runs the QoS 1 (-qos) fan-in 8→1 at 5k, 10k, 20k, 40k, 80k, 120k and 160k msg/s offered, then 40k
// more each time up to -curve-max, until every broker has saturated: delivered less than 95% of the offered
// rate, as the median of its runs, or lost a message. A saturated broker is not run at higher rates. The
// table gives the achieved rate and p50, p99 and p99.9 latency of each broker at each rate.
//
// The brokers and lyre-bench share the machine, so the figures say how the brokers compare there, not what
// either does on a machine of its own.
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
