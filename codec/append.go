package codec

import (
	"fmt"
	"sync"
)

// appendWriter is an io.Writer and io.ByteWriter that appends to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

// pooledEncoder is an encoder bound to its own appendWriter, so pointing
// it at the caller's slice costs no allocation.
type pooledEncoder interface {
	// writer returns the appendWriter the encoder writes to.
	writer() *appendWriter
	// encode writes v.
	encode(v any) error
}

// appendPooled appends the encoding of v to dst with an encoder from pool,
// whose values are pooledEncoders. A panicking encoder is dropped, not
// pooled, as its state is unknown; the panic is returned as an error
// whose text starts with name.
func appendPooled(pool *sync.Pool, name string, dst []byte, v any) (out []byte, err error) {
	e := pool.Get().(pooledEncoder)
	defer func() {
		if p := recover(); p != nil {
			out, err = dst, fmt.Errorf("%s: panic encoding %T: %v", name, v, p)
		}
	}()
	w := e.writer()
	w.b = dst
	err = e.encode(v)
	out = w.b
	w.b = nil
	pool.Put(e)
	return out, err
}
