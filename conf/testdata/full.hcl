# Every attribute of the schema, each set to a value other than its default.
connector "public" {
  bind            = "tcp://0.0.0.0:61614"
  detect          = ["stomp", "mqtt"]
  detect_timeout  = "250ms"
  max_connections = 500
  virtual_host    = "tenant-a"

  mqtt {
    path_separator          = "|"
    any_child_wildcard      = "?"
    any_descendant_wildcard = "@"
    regex_wildcard_start    = "<"
    regex_wildcard_end      = ">"
    part_pattern            = "[a-z0-9_-]+"
    queue_prefix            = "queue/"
    topic_prefix            = "topic/"
    dsub_prefix             = "dsub/"
    temp_queue_prefix       = "tq/"
    temp_topic_prefix       = "tt/"
    destination_separator   = ";"
    max_message_length      = "1MB"
    die_delay               = "1s"
    max_inflight            = 65535
    max_queued_messages     = 0
    max_subscriptions       = 50
    max_topic_levels        = 16
    receive_maximum         = 100
    topic_alias_maximum     = 0
    max_session_expiry      = "1h"
    max_keep_alive          = "2m"
    response_topic_prefix   = "responses/"
  }

  stomp {
    path_separator          = "/"
    any_child_wildcard      = "+"
    any_descendant_wildcard = ">"
    regex_wildcard_start    = "("
    regex_wildcard_end      = ")"
    part_pattern            = "\\w+"
    queue_prefix            = "/q/"
    topic_prefix            = ""
    dsub_prefix             = "/d/"
    temp_queue_prefix       = "/tmpq/"
    temp_topic_prefix       = "/tmpt/"
    destination_separator   = ";"
    max_message_length      = 65536
    die_delay               = "1m30s"
    max_headers             = 10
    max_header_length       = "512B"
    add_user_header         = "JMSXUserID"
    add_timestamp_header    = "timestamp"
    add_redeliveries_header = "redeliveries"
  }
}

connector "plain" {
  bind     = "tcp://[::1]:1884"
  protocol = "stomp"
}

virtual_host "tenant-a" {
  host_names = ["a.example.com", "tenant-a.local"]
  anonymous  = false
  store {
    directory   = "/var/lib/lyre/a"
    sync        = false
    flush_delay = "2ms"
  }
}

virtual_host "tenant-b" {
  anonymous                    = true
  shared_subscription_strategy = "hash_clientid"
}
