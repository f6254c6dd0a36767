// Package redistest starts Redis servers for tests and controls them.
//
// It is imported only by _test.go files. A [Server] is a redis-server
// process spawned on a free loopback port ([Start]), an embedded miniredis
// ([StartMini]) or an existing server named by a URL ([FromURL]). [Each]
// runs the same test on every backend that is available, and
// [StartCluster] forms a local Redis Cluster.
//
// Spawned servers are disposable: they keep nothing on disk, accept DEBUG
// commands from loopback, and can be killed, restarted with empty data,
// frozen with SIGSTOP or paused with CLIENT PAUSE. Every process, client
// and goroutine a helper starts is gone when the test's cleanup has run.
//
// When the environment variable CI is true, a missing redis-server binary
// fails the test instead of skipping it, so CI never passes by testing
// nothing.
package redistest
