package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// JSON returns a codec that uses encoding/json. Its output is larger and
// slower to produce than [Msgpack]'s but readable in redis-cli.
//
// Append writes what json.Marshal would, without a trailing newline.
// Unmarshal behaves as json.Unmarshal; input that is not valid JSON returns
// an error wrapping both [ErrMalformed] and the *json.SyntaxError. Numbers
// decoded into interface values become float64, and a time.Time decodes in
// the zone offset it was written with. Panics inside the encoder or decoder,
// such as from a custom MarshalJSON, are returned as errors.
//
// JSON is safe for concurrent use.
func JSON() Codec { return jsonCodec{} }

type jsonCodec struct{}

func (jsonCodec) ID() byte     { return JSONID }
func (jsonCodec) Name() string { return "json" }

// jsonEncoder is a json.Encoder bound to its own appendWriter.
// json.Encoder.Encode writes straight into it, where json.Marshal would
// return a fresh copy.
type jsonEncoder struct {
	w   appendWriter
	enc *json.Encoder
}

func (e *jsonEncoder) writer() *appendWriter { return &e.w }

func (e *jsonEncoder) encode(v any) error { return e.enc.Encode(v) }

var jsonEncoders = sync.Pool{New: func() any {
	e := new(jsonEncoder)
	e.enc = json.NewEncoder(&e.w)
	return e
}}

func (jsonCodec) Append(dst []byte, v any) ([]byte, error) {
	out, err := appendPooled(&jsonEncoders, "json", dst, v)
	if err != nil {
		return dst, err
	}
	return out[:len(out)-1], nil // drop the newline Encode adds
}

func (jsonCodec) Unmarshal(data []byte, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("json: panic decoding into %T: %v", v, p)
		}
	}()
	// json.Unmarshal checks the whole input before decoding, and reports
	// invalid JSON, including empty input, as a *json.SyntaxError.
	err = json.Unmarshal(data, v)
	if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
		return fmt.Errorf("json: %w: %w", ErrMalformed, err)
	}
	return err
}
