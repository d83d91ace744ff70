package cluster

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// maxPayload is the embedded server's message limit. A larger Lyre message stays on
// its node (counted in Stats.TooLarge). 8 MiB, where nats-server starts warning.
const maxPayload = 8 << 20

// routePing is how often the embedded server pings each route.
const routePing = 5 * time.Second

// startServer starts the embedded NATS server with a route listener on c.Listen and routes to c.Routes.
// The link connects in-process. nats-server v2.15.3 starts routing only after its client accept loop
// (with DontListen it never does), so a client listener exists, on a random loopback port, and it
// requires token, a random secret only this process knows.
func startServer(c Config, token string, log *zap.Logger) (*server.Server, error) {
	host, port, err := splitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster: listen %q: %w", c.Listen, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT // the nats-server spelling of "any free port"; see Link.RouteAddr
	}
	routes := make([]*url.URL, 0, len(c.Routes))
	for _, r := range c.Routes {
		routes = append(routes, &url.URL{Scheme: "nats", Host: r})
	}
	clusterOpts := server.ClusterOpts{Name: c.Name, Host: host, Port: port,
		// What the other nodes are told to dial (route gossip); "" = the listener's address.
		Advertise: c.Advertise,
		// A route whose peer went silent (a partition that resets nothing) is closed after MaxPingsOut
		// unanswered pings: within about 20 s rather than NATS's default of up to 90 s (pings every 30 s,
		// 2 outstanding), so the node says it lost the cluster while it matters.
		PingInterval: routePing,
		MaxPingsOut:  3,
	}
	o := &server.Options{
		ServerName:    c.Node,
		Host:          "127.0.0.1",
		Port:          server.RANDOM_PORT,
		Authorization: token,
		NoSigs:        true,
		MaxPayload:    maxPayload,
		Cluster:       clusterOpts,
		Routes:        routes,
	}
	if c.Directory != "" {
		// A JetStream cluster's peers come from the configured routes: every node lists the others (conf
		// refuses a directory without routes). File-backed streams; memory is only for the server's own caches, so a small cap keeps a node's
		// RSS its own business rather than JetStream's default of 75% of the machine.
		o.JetStream = true
		o.StoreDir = c.Directory
		o.JetStreamMaxMemory = 64 << 20
	}
	ns, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded NATS: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log.Named("nats").Sugar()}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("cluster: embedded NATS not ready (route listener %s)", c.Listen)
	}
	return ns, nil
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, n, nil
}

// natsLogger passes the embedded server's log to zap: notices (route connected, closed) at Info.
type natsLogger struct{ s *zap.SugaredLogger }

func (l natsLogger) Noticef(f string, v ...any) { l.s.Infof(f, v...) }
func (l natsLogger) Warnf(f string, v ...any)   { l.s.Warnf(f, v...) }
func (l natsLogger) Fatalf(f string, v ...any)  { l.s.Errorf(f, v...) }
func (l natsLogger) Errorf(f string, v ...any)  { l.s.Errorf(f, v...) }
func (l natsLogger) Debugf(f string, v ...any)  { l.s.Debugf(f, v...) }
func (l natsLogger) Tracef(f string, v ...any)  {}

var _ server.Logger = natsLogger{}
