package main

import (
	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
)

// fdReserve is the file descriptors the broker needs besides its connections: listeners, each store's
// files, logs, the management server's own. A connector may only accept up to the open-file limit less
// this; past it accept fails with "too many open files" and the connector backs off.
const fdReserve = 256

// warnOpenFiles logs a warning for each connector whose max_connections the process's open-file limit
// (RLIMIT_NOFILE's soft limit, which Go raises to the hard limit at startup) cannot hold, and one more when
// the connectors' max_connections together exceed it. Nothing is refused: the limit may be raised outside
// the broker, and connections rarely all come at once; but an operator sizing max_connections (each idle
// connection costs about 4 KiB) must know that the kernel's limit comes first.
func warnOpenFiles(cfg *conf.Config, log *zap.Logger) {
	limit, ok := openFileLimit()
	if !ok {
		return
	}
	checkOpenFiles(cfg, limit, log)
}

// checkOpenFiles is warnOpenFiles for a given limit.
func checkOpenFiles(cfg *conf.Config, limit uint64, log *zap.Logger) {
	avail := int64(limit) - fdReserve
	var sum int64
	over := false
	for _, c := range cfg.Connectors {
		n := int64(c.WithDefaults().MaxConnections)
		sum += n
		if n > avail {
			over = true
			log.Warn("max_connections exceeds the open-file limit: connections past it fail to be accepted (too many open files); raise the limit (ulimit -n, LimitNOFILE) or lower max_connections",
				zap.String("connector", c.Name), zap.Int64("max_connections", n), zap.Uint64("open_file_limit", limit),
				zap.Int("reserved_descriptors", fdReserve))
		}
	}
	if !over && len(cfg.Connectors) > 1 && sum > avail {
		log.Warn("the connectors' max_connections add up to more than the open-file limit: connections past it fail to be accepted (too many open files); raise the limit (ulimit -n, LimitNOFILE) or lower max_connections",
			zap.Int64("max_connections_total", sum), zap.Uint64("open_file_limit", limit),
			zap.Int("reserved_descriptors", fdReserve))
	}
}
