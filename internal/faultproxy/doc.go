// Package faultproxy is an in-process TCP proxy that injects network
// faults between a client and a server, in the manner of toxiproxy but
// without root or a separate process.
//
// A [Proxy] listens on a loopback port and forwards each connection it
// accepts to a target address. Its controls (latency, blackhole, reset,
// refuse) take effect at once on live connections and on every later one.
// It is meant for tests: point a client at [Proxy.Addr] instead of the
// server.
package faultproxy
