package prototest

import "github.com/go-stomp/stomp/v3"

// NopStompLogger drops everything go-stomp's client logs. By default the client writes to the standard
// logger, a line for instance for every subscription it closes at disconnect; tests pass
// stomp.ConnOpt.Logger(prototest.NopStompLogger{}) to keep their output to what the broker logs.
type NopStompLogger struct{}

func (NopStompLogger) Debugf(string, ...any)   {}
func (NopStompLogger) Infof(string, ...any)    {}
func (NopStompLogger) Warningf(string, ...any) {}
func (NopStompLogger) Errorf(string, ...any)   {}
func (NopStompLogger) Debug(string)            {}
func (NopStompLogger) Info(string)             {}
func (NopStompLogger) Warning(string)          {}
func (NopStompLogger) Error(string)            {}

var _ stomp.Logger = NopStompLogger{}
