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
	fs := flag.NewFlagSet("cacheproxy", flag.ContinueOnError)
	fs.SetOutput(logOut)
	listen := fs.String("listen", "127.0.0.1:8081", "address to serve on")
	origin := fs.String("origin", "", "origin URL to forward to (required)")
	redisURL := fs.String("redis", "", "Redis URL; empty for an embedded miniredis")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *origin == "" {
		fs.Usage()
		return errors.New("-origin is required")
	}
	target, err := url.Parse(*origin)
	if err != nil || target.Scheme == "" || target.Host == "" {
		return fmt.Errorf("bad -origin %q", *origin)
	}
	var opts *redis.Options
	if *redisURL != "" {
		if opts, err = redis.ParseURL(*redisURL); err != nil {
			return fmt.Errorf("bad -redis: %w", err)
		}
	}
	rdb, where, closeRedis, err := demoredis.Connect(ctx, opts, 0)
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
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		ErrorLog: logger,
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: c.Middleware(proxy), ErrorLog: logger, ReadHeaderTimeout: 10 * time.Second}
	logger.Printf("serving on http://%s, origin %s, responses in %s", ln.Addr(), target, where)
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
