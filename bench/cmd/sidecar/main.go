// Command sidecar runs oceanhooks exactly as `oceanhooks serve --config FILE`
// does (same config loading, same server.Run), plus net/http/pprof on a
// separate loopback listener, so that the benchmarks can take CPU profiles of
// the real server under load. The shipped binary has no pprof endpoint.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/server"
)

func main() {
	file := flag.String("config", "", "oceanhooks YAML config file")
	pprofAddr := flag.String("pprof", "127.0.0.1:18305", "address of the pprof listener")
	blockRate := flag.Int("block-rate", 0, "runtime.SetBlockProfileRate (ns; 0: no block profile)")
	mutexFraction := flag.Int("mutex-fraction", 0, "runtime.SetMutexProfileFraction (0: no mutex profile)")
	flag.Parse()
	runtime.SetBlockProfileRate(*blockRate)
	runtime.SetMutexProfileFraction(*mutexFraction)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *file, *pprofAddr); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, file, pprofAddr string) error {
	cfg, err := config.Load(config.Sources{File: file, Environ: os.Environ()})
	if err != nil {
		return err
	}
	level, err := config.ParseLevel(cfg.Log.Level)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	dbg := &http.Server{Addr: pprofAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := dbg.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("pprof listener", "err", err)
		}
	}()
	defer func() { _ = dbg.Close() }()
	if err := server.Run(ctx, cfg, logger); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
