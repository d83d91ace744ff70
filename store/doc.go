// Package store will hold what must survive a crash: queues, durable subscriptions, MQTT sessions, retained
// messages and in-flight QoS 1/2 state, behind an interface with a badger implementation and an in-memory
// one. Until that lands (see the persistence issue) every virtual host keeps its state in memory only.
package store
