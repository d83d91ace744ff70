package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/lyremq/lyre/conf"
)

// version is overridden at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// shutdownTimeout bounds a graceful shutdown; connections still open after it are closed hard.
const shutdownTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go tuneGC(ctx.Done())
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code, so tests can drive it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "passwd":
			return passwd(args[1:], os.Stdin, stdout, stderr)
		case "store":
			return storeCommand(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("lyre", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "HCL configuration `file` (default: the embedded configuration)")
	check := fs.Bool("check", false, "validate the configuration, print every problem and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	logFormat := fs.String("log-format", "console", "log `format`: console or json")
	pprofAddr := fs.String("pprof", "", "serve Go's profiles (net/http/pprof) on this `address`, e.g. 127.0.0.1:6060; off by default")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lyre: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "lyre %s\n", version)
		return 0
	}

	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	if *check {
		fmt.Fprintf(stdout, "%s: configuration ok (%d connectors, %d virtual hosts)\n",
			cfg.Source, len(cfg.Connectors), len(cfg.VirtualHosts))
		return 0
	}

	log, err := newLogger(*logLevel, *logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "lyre: %v\n", err)
		return 2
	}
	defer func() { _ = log.Sync() }()

	b, err := Start(cfg, log)
	if err != nil {
		log.Error("start failed", zap.Error(err))
		return 1
	}
	log.Info("lyre started", zap.String("version", version), zap.String("config", cfg.Source))
	if *pprofAddr != "" {
		stop, err := servePprof(*pprofAddr, log)
		if err != nil {
			log.Error("pprof", zap.Error(err))
		} else {
			defer stop()
		}
	}
	// SIGHUP reloads the configuration (Broker.Reload, which logs what it did or why it refused), TLS
	// certificates included.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-hup:
			_ = b.Reload()
		case <-ctx.Done():
		}
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := b.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", zap.Error(err))
	}
	log.Info("stopped")
	return 0
}

func loadConfig(path string) (*conf.Config, error) {
	if path == "" {
		return conf.Default(), nil
	}
	return conf.Load(path)
}

func newLogger(level, format string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var enc zapcore.Encoder
	switch format {
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	default:
		return nil, fmt.Errorf("--log-format: want console or json, got %q", format)
	}
	// Sampling keeps per-message warnings (drops, refusals) from flooding the log under load.
	core := zapcore.NewSamplerWithOptions(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl),
		time.Second, 100, 100)
	return zap.New(core, zap.ErrorOutput(zapcore.AddSync(w))), nil
}

// servePprof serves net/http/pprof on addr (its own mux, nothing else) until stop; the CPU, heap, mutex
// and block profiles of a broker under load are how its performance is studied. Mutex and block profiling
// are switched on at a low rate.
func servePprof(addr string, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	runtime.SetMutexProfileFraction(100)
	runtime.SetBlockProfileRate(100000) // one sample per 100 µs blocked
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("pprof listening", zap.Stringer("address", ln.Addr()))
	return func() { _ = srv.Close() }, nil
}
