package transport

import "sync"

// maxPooled is the largest buffer kept for reuse: one huge value should not
// pin memory for the life of the process.
const maxPooled = 256 << 10

// Buffers pools encode and decompression buffers, and knows when one that
// a command carried may be reused.
//
// The rule: a buffer that no command carried goes back with Put. One that
// a command carried goes back with Release once the call returned: in
// direct mode the call writes its arguments before it returns (the
// coalescer sends a command with a []byte argument alone, on the caller's
// goroutine, for that reason), so Release reuses it. Otherwise a guarded
// call may have been abandoned while its goroutine still writes the
// buffer: Release leaves it to the garbage collector.
type Buffers struct {
	pool  sync.Pool // *[]byte
	reuse bool      // direct: a returned call holds no argument
}

// Buffers returns t's buffer pool.
func (t *Transport) Buffers() *Buffers { return &t.bufs }

// Get returns an empty buffer.
func (b *Buffers) Get() *[]byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return p
	}
	p := make([]byte, 0, 2048)
	return &p
}

// Put returns a buffer that no command carried.
func (b *Buffers) Put(p *[]byte) {
	if cap(*p) <= maxPooled {
		*p = (*p)[:0]
		b.pool.Put(p)
	}
}

// Release returns a buffer that a command carried, once its call returned:
// to the pool only when no abandoned call can still be writing it.
func (b *Buffers) Release(p *[]byte) {
	if b.reuse {
		b.Put(p)
	}
}
