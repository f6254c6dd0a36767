package main

import "testing"

// Each workload is one benchmark with a sub-benchmark per library, so
// that one row can be profiled:
//
//	go test -run '^$' -bench 'HitRedis/cachemgr' -benchtime 1s -cpuprofile cpu.out

func BenchmarkHitRedis(b *testing.B)      { runWorkload(b, wHitRedis) }
func BenchmarkHitLocal(b *testing.B)      { runWorkload(b, wHitLocal) }
func BenchmarkMissLoad(b *testing.B)      { runWorkload(b, wMiss) }
func BenchmarkStampede1(b *testing.B)     { runWorkload(b, wStampede1) }
func BenchmarkStampede4(b *testing.B)     { runWorkload(b, wStampede4) }
func BenchmarkBatch(b *testing.B)         { runWorkload(b, wBatch) }
func BenchmarkBatchLocal(b *testing.B)    { runWorkload(b, wBatchLocal) }
func BenchmarkParallelRedis(b *testing.B) { runWorkload(b, wParallelRedis) }
func BenchmarkParallelLocal(b *testing.B) { runWorkload(b, wParallelLocal) }

func runWorkload(b *testing.B, name string) {
	s := needServer(b)
	for _, w := range workloads() {
		if w.name != name {
			continue
		}
		for _, l := range libs() {
			b.Run(l.name, func(b *testing.B) {
				if why, ok := l.na[w.name]; ok {
					b.Skip("n/a: " + why)
				}
				bench(s, l, w)(b)
			})
		}
	}
}
