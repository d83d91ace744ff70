package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func newLogger(verbose bool) *zap.Logger {
	cfg := zap.NewDevelopmentConfig()
	cfg.DisableStacktrace = true
	cfg.DisableCaller = true
	cfg.EncoderConfig.TimeKey = ""
	cfg.OutputPaths = []string{"stderr"}
	if !verbose {
		cfg.Level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
	}
	log, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return log
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// exitCode is 130 after Ctrl-C, as a shell reports for SIGINT, else 1.
func exitCode(ctx context.Context) int {
	if ctx.Err() != nil {
		return 130
	}
	return 1
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "compare" {
		return compareMain(args[1:], stdout, stderr)
	}
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		if errors.Is(err, errUsage) {
			fmt.Fprintln(stderr, err)
		}
		return 2
	}
	log := newLogger(c.verbose)
	defer log.Sync()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	// After the first Ctrl-C the signal handler is removed, so a second one kills a stuck run.
	context.AfterFunc(ctx, cancel)
	if c.cpuProf != "" {
		stop, err := startCPUProfile(c.cpuProf)
		if err != nil {
			log.Error("cpu profile", zap.Error(err))
			return 1
		}
		defer stop()
	}
	var progress io.Writer
	if !c.quiet {
		progress = stderr
	}

	rep, interrupted := runMode(ctx, c, progress, log)
	if rep == nil {
		return exitCode(ctx)
	}
	if c.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.print(stdout)
	}
	switch {
	case interrupted:
		return 130
	case rep.failed():
		return 1
	}
	return 0
}

// startCPUProfile starts writing lyre-bench's own CPU profile to path; stop ends it and closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// report is the outcome of a run of any mode.
type report interface {
	print(io.Writer)
	failed() bool
}

// runMode runs the mode c asks for. When the run cannot start it logs why and returns no report.
func runMode(ctx context.Context, c *config, progress io.Writer, log *zap.Logger) (rep report, interrupted bool) {
	if c.mode == "idle" {
		r, err := idle(ctx, c, progress)
		if err != nil {
			log.Error("idle run failed", zap.Error(err))
			return nil, false
		}
		return r, r.Interrupted
	}
	if c.mode == "connect" {
		r := connectRun(ctx, c, progress)
		return r, r.Interrupted
	}
	if c.mode == "soak" {
		r, err := soak(ctx, c, progress, log)
		if err != nil {
			log.Error("soak failed to start", zap.Error(err))
			return nil, false
		}
		return r, r.Interrupted
	}
	r, err := bench(ctx, c, progress, log)
	if err != nil {
		log.Error("benchmark failed to start", zap.Error(err))
		return nil, false
	}
	return r, r.Interrupted
}
