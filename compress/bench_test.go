package compress_test

import (
	"fmt"
	"testing"

	"github.com/cachemgr/cachemgr/compress"
)

func BenchmarkLZ4Compress(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			src := jsonLike(size)
			dst := make([]byte, 0, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := compress.LZ4().Compress(dst, src); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

func BenchmarkLZ4Decompress(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			src := jsonLike(size)
			block, ok, err := compress.LZ4().Compress(nil, src)
			if !ok || err != nil {
				b.Fatal(ok, err)
			}
			dst := make([]byte, 0, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := compress.LZ4().Decompress(dst, block, size); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(block))/float64(size), "ratio")
		})
	}
}
