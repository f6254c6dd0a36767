// Command cacheproxy is a caching reverse proxy: an httputil.ReverseProxy
// to one origin, wrapped in httpcache's middleware with its defaults. It
// exists to run the HTTP cache test suite (http-tests/cache-tests) against
// the middleware; see run-cache-tests.sh beside it.
//
//	cacheproxy -listen 127.0.0.1:8081 -origin http://127.0.0.1:8000
//
// Without -redis it stores responses in an embedded miniredis, so it runs
// anywhere; -redis redis://host:port/db uses a real server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/httpcache"
	"github.com/cachemgr/cachemgr/internal/demoredis"
	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "cacheproxy:", err)
		os.Exit(1)
	}
}

// run parses args, serves until ctx ends, and reports on log.
func run(ctx context.Context, args []string, logOut io.Writer) error {
	cfg, err := parseFlags(args, logOut)
	if err != nil {
		return err
	}
	rdb, where, closeRedis, err := demoredis.Connect(ctx, cfg.redisOpts, 0)
	if err != nil {
		return err
	}
	defer closeRedis()
	logger := log.New(logOut, "cacheproxy: ", log.LstdFlags)

	m, err := cachemgr.New(rdb, cachemgr.WithPrefix("cacheproxy"), cachemgr.WithOpTimeout(time.Second))
	if err != nil {
		return err
	}
	defer m.Close()
	c, err := httpcache.New(m, "proxy")
	if err != nil {
		return err
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(cfg.origin)
			r.Out.Host = r.In.Host
		},
		ErrorLog: logger,
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: c.Middleware(proxy), ErrorLog: logger, ReadHeaderTimeout: 10 * time.Second}
	logger.Printf("serving on http://%s, origin %s, responses in %s", ln.Addr(), cfg.origin, where)
	return serve(ctx, srv, ln)
}

// config is what the command line asks for.
type config struct {
	listen    string
	origin    *url.URL
	redisOpts *redis.Options // nil: an embedded miniredis
}

// parseFlags parses the command line args, writing usage to out.
func parseFlags(args []string, out io.Writer) (config, error) {
	fs := flag.NewFlagSet("cacheproxy", flag.ContinueOnError)
	fs.SetOutput(out)
	listen := fs.String("listen", "127.0.0.1:8081", "address to serve on")
	origin := fs.String("origin", "", "origin URL to forward to (required)")
	redisURL := fs.String("redis", "", "Redis URL; empty for an embedded miniredis")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if *origin == "" {
		fs.Usage()
		return config{}, errors.New("-origin is required")
	}
	cfg := config{listen: *listen}
	var err error
	cfg.origin, err = url.Parse(*origin)
	if err != nil || cfg.origin.Scheme == "" || cfg.origin.Host == "" {
		return config{}, fmt.Errorf("bad -origin %q", *origin)
	}
	if *redisURL != "" {
		if cfg.redisOpts, err = redis.ParseURL(*redisURL); err != nil {
			return config{}, fmt.Errorf("bad -redis: %w", err)
		}
	}
	return cfg, nil
}

// serve serves on ln with srv until ctx ends, then shuts srv down.
func serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
