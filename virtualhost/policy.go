package virtualhost

import (
	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
)

// routerOptions derives the router options of host c from its configuration, on top of o.
func routerOptions(c conf.VirtualHost, o router.Options) router.Options {
	_ = c
	return o
}
