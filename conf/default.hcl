# Lyre's built-in configuration: what `lyre` runs with when no -config file is given.
# Copy this file (conf/default.hcl in the source tree) to lyre.hcl as a starting point.
#
# Commented-out attributes show their defaults. Sizes are bytes or strings with a binary unit
# ("512B", "10KB", "100MB", "1GB"; 1KB = 1024 bytes); durations are strings like "5s" or "250ms".
# Note: an HCL one-line block may hold only one attribute; put several on separate lines.

# $SYS/broker/... status topics of each virtual host (mosquitto's names), refreshed this often; "0s" = off.
# sys_interval = "10s"

# One port speaking MQTT, STOMP and HTTP (MQTT and STOMP over WebSocket): the protocol is recognised from
# the first bytes a client sends.
connector "default" {
  # tcp://host:port. 127.0.0.1 accepts local clients only; use 0.0.0.0 (or ::) for every interface.
  # ws://host:port and wss://host:port make a WebSocket-only connector (wss needs the tls block).
  bind = "tcp://127.0.0.1:61613"
  # Either `detect` (a list of protocols to recognise) or `protocol = "mqtt"` / `protocol = "stomp"`.
  detect = ["mqtt", "stomp", "http"]
  # detect_timeout  = "5s"    # close a connection that has not identified itself by then
  # max_connections = 10000   # further connections are refused

  # virtual_host = "default"  # host for MQTT clients; default: the first virtual_host below

  # TLS: add "tls" to detect (detect = ["tls", "mqtt", "stomp"]) to recognise TLS on this same port, or
  # bind = "tls://host:port" for a TLS-only connector. Relative paths are relative to this file.
  # tls {
  #   cert_file      = "server.pem"
  #   key_file       = "server.key"
  #   client_ca_file = "clients-ca.pem"  # verify client certificates against these CAs
  #   client_auth    = "none"            # "none", "request" or "require"
  #   min_version    = "1.2"             # or "1.3"
  #   cert_identity  = "cn"              # a client certificate's CN ("cn") or DN ("dn") names the user
  # }

  # HTTP: WebSocket clients (browsers, MQTT.js, stomp.js) connect to ws://host:port/mqtt or /stomp; the
  # sub-protocol (mqtt, mqttv3.1, v12.stomp, v11.stomp, v10.stomp, stomp) picks the front-end, else the
  # path. Other requests get 404, unless management is on.

  # Management: other HTTP requests get the REST API (/api/v1/), Prometheus metrics (/metrics) and the
  # web console (/console/), with HTTP basic auth against the virtual host's users (actions monitor and
  # admin; send to publish). Off by default; on here because this connector binds to loopback.
  management = true
  # http {
  #   allowed_origins  = []       # browser origins allowed, e.g. ["https://app.example.com"] or ["*"];
  #                               # empty: only pages served from the host the request names
  #   mqtt_path        = "/mqtt"
  #   stomp_path       = "/stomp"
  #   max_header_bytes = "8KB"    # request line and headers
  #   upgrade_timeout  = "10s"    # first byte to completed WebSocket handshake
  # }

  stomp {
    # Destination names. STOMP clients address /queue/a.b, /topic/a.b (also /dsub/..., /temp-queue/...,
    # /temp-topic/...); "*" matches one level, "**" any number, "{re}" one level by regular expression.
    # path_separator          = "."
    # any_child_wildcard      = "*"
    # any_descendant_wildcard = "**"
    # regex_wildcard_start    = "{"
    # regex_wildcard_end      = "}"
    # part_pattern            = ""    # unset: a level may hold anything; else an RE2 regex each must match
    # queue_prefix            = "/queue/"
    # topic_prefix            = "/topic/"
    # dsub_prefix             = "/dsub/"
    # temp_queue_prefix       = "/temp-queue/"
    # temp_topic_prefix       = "/temp-topic/"
    # destination_separator   = ","   # SEND/SUBSCRIBE to several destinations at once

    # max_message_length = "100MB"    # larger frames are refused before their body is read
    # die_delay          = "5s"       # after an ERROR frame the connection closes within this delay
    # max_headers        = 1000
    # max_header_length  = "10KB"
    # add_user_header         = ""    # e.g. "JMSXUserID": stamp the sender's user on each message
    # add_timestamp_header    = ""    # e.g. "timestamp": stamp the receive time (epoch ms)
    # add_redeliveries_header = ""    # e.g. "redeliveries": carry the redelivery count

    # What one connection's open transactions (BEGIN..COMMIT) may hold, all of them together:
    # max_transactions       = 100
    # max_transaction_frames = 10000
    # max_transaction_bytes  = "100MB" # command, headers and bodies; default: max_message_length

    # max_selector_length = "4KB"     # SUBSCRIBE selector header; each message costs time linear in it
    # max_subscriptions   = 1000      # destinations one connection subscribes to (composites count each)
  }

  mqtt {
    # Topic names: "sensors/k1/temp" here is "/topic/sensors.k1.temp" for STOMP clients.
    # path_separator          = "/"
    # any_child_wildcard      = "+"
    # any_descendant_wildcard = "#"
    # queue_prefix            = ""    # e.g. "queue/": topics starting with it address queues

    # max_message_length  = "100MB"
    # die_delay           = "5s"
    # max_inflight        = 128     # unacknowledged QoS 1/2 messages per client (1 to 65535)
    # max_queued_messages = 1000    # further messages waiting for a connected client's window; beyond
    #                               # it its publishers are held back (an offline session keeps what its
    #                               # durable subscriptions' quota allows: see dsub below)
    # max_subscriptions   = 1000    # per client; a SUBSCRIBE listing more is refused unread
    # max_topic_levels    = 128

    # MQTT 5 only, announced in CONNACK:
    # receive_maximum       = 1024     # unacknowledged QoS 1/2 PUBLISHes a client may send (1 to 65535)
    # topic_alias_maximum   = 64       # topic aliases per connection, each way; 0 = none
    # max_session_expiry    = "0s"     # cap on the session expiry a client asks for; 0 = no cap
    # max_keep_alive        = "0s"     # cap on the keep-alive a client asks for; 0 = no cap
    # response_topic_prefix = "reply/" # Response Information: this prefix + the client id
  }
}

# The standard MQTT port.
connector "mqtt" {
  bind     = "tcp://127.0.0.1:1883"
  protocol = "mqtt"
}

# A virtual host is a tenant with its own destinations and storage. The first one is the default:
# it serves clients that name no host (STOMP CONNECT `host` header, MQTT connector `virtual_host`).
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  # Clients may connect without credentials. Only sensible because the connectors above bind to loopback.
  anonymous = true

  # users_file = "users.hcl"   # user "NAME" { <lines printed by lyre passwd>  groups = [..] }:
  #                            # password = "<bcrypt hash>" and, for SCRAM-SHA-256, a scram_sha_256 block
  # max_connections    = 0     # 0 = unlimited
  # max_queues         = 0     # 0 = unlimited
  # max_message_length = 0     # 0 = the connector's
  # quota              = "64MB"  # what each queue and durable subscription holds at most, unless a
  # quota_messages     = 100000  # queue or dsub block says otherwise
  # max_subscriptions         = 1000000  # held by all clients together (queue consumers included)
  # max_durable_subscriptions = 100000   # STOMP /dsub/... and those of MQTT sessions kept offline
  # max_concurrent_logins             = 0  # password checks at once; 0 = one per CPU; others wait (5s)
  # max_concurrent_logins_per_address = 4  # logins under way from one IP, a failed one until its delay ends
  # credential_cache      = "30s"  # a password bcrypt verified is trusted this long for the same user, so
  #                                # reconnecting costs no bcrypt; forgotten on reload; "0s" = off
  # credential_cache_size = 10000  # users held at once; a new one then replaces another
  # shared_subscription_strategy = "round_robin"  # MQTT 5 $share/{group}/{filter}: which member gets a
  #                            # message: round_robin, random, sticky, hash_clientid or hash_topic

  # Access rules (also allowed at top level, checked first): the first matching rule decides; when rules
  # exist and none matches, the request is denied. Without any rule everything is allowed. With rules,
  # remember one allowing action "connect" (checked with kind "virtual_host" and this host's name as id).
  # An id with a wildcard first level ("**") does not cover "$SYS" topics: name them ("$SYS.**").
  # access_rule {
  #   allow  = ["+"]                      # or deny = [...]; users, groups, "+" any user, "*" anyone
  #   action = ["send", "receive"]        # connect send receive consume create destroy admin monitor
  #   kind   = "topic"                    # connector virtual_host broker topic queue dsub, or "*"
  #                                       # (a durable subscription needs create on kind dsub)
  #   id     = "devices.%c.**"            # STOMP syntax without prefix; %u user, %c client id
  # }

  # queue "orders.**" {
  #   nak_limit         = 5           # then the message goes to dlq (or is dropped)
  #   dlq               = "dlq.*"     # "*" is the queue's name
  #   quota             = "64MB"
  #   quota_messages    = 100000
  #   full_policy       = "block"     # "block", "drop_head" or "drop_tail"
  #   auto_delete_after = "0s"        # 0 = never
  # }
  # Durable subscriptions: STOMP /dsub/<id>, and each subscription of an MQTT session with clean
  # session off, named $mqtt.<client id>.<filter>. Same attributes as a queue block.
  # dsub "$mqtt.**" {
  #   quota_messages = 100000
  #   full_policy    = "block"       # full: block holds publishers back while a connected client
  #                                  # drains it, else drops the new message (counted); or drop_head
  # }
  # Topics: a publisher is held back (its socket is not read) while a subscriber it feeds is over
  # its window, for at most 500ms; then that subscriber drops what does not fit until it catches up.
  # topic "feeds.**" {
  #   slow_consumer_policy = "block"  # default, also for topics no block matches; or "queue":
  #                                   # never hold publishers back, drop at the subscriber's window
  # }

  # Without a store block everything is kept in memory and lost on restart.
  store {
    directory = "data"      # relative to the working directory
    # sync        = true    # a commit is on disk before it is acknowledged
    # flush_delay = "0s"    # batch writes for up to this long
  }
}
