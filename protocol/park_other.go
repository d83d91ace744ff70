//go:build !linux

package protocol

// Without readiness notification (park_linux.go) every connection keeps its goroutine between packets.

type watchState struct{}

type pollerOnce struct{}

func (c *Conn) watchable()     {}
func (c *Conn) canPark() bool  { return false }
func (c *Conn) park() bool     { return false }
func (c *Conn) unwatch()       {}
func (s *Server) closePoller() {}
