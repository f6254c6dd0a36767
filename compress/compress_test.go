package compress_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cachemgr/cachemgr/compress"
)

func TestIdentity(t *testing.T) {
	tests := []struct {
		c        compress.Compressor
		wantID   byte
		wantName string
	}{
		{compress.LZ4(), compress.LZ4ID, "lz4"},
		{compress.None(), compress.NoneID, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.wantName, func(t *testing.T) {
			if got := tt.c.ID(); got != tt.wantID {
				t.Errorf("ID() = %d, want %d", got, tt.wantID)
			}
			if got := tt.c.Name(); got != tt.wantName {
				t.Errorf("Name() = %q, want %q", got, tt.wantName)
			}
		})
	}
}

// randomBytes returns n bytes from a fixed seed; they do not compress.
func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// jsonLike returns n bytes of JSON-ish text that compresses about as well
// as typical cached records.
func jsonLike(n int) []byte {
	r := rand.New(rand.NewPCG(2, uint64(n)))
	b := []byte("[")
	for len(b) < n {
		id := r.IntN(1_000_000)
		b = fmt.Appendf(b, `{"id":%d,"name":"user-%d","email":"user%d@example.com","active":%t,"score":%.3f,"tags":["t%d","t%d"]},`,
			id, id, id, r.IntN(2) == 0, r.Float64()*100, r.IntN(50), r.IntN(50))
	}
	return b[:n]
}
