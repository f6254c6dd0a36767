package codec

import "errors"

var (
	// ErrMalformed reports input that is not a well-formed encoding for the
	// codec, or that declares more data than it holds. Match it with
	// errors.Is; the returned error says where the input went wrong.
	ErrMalformed = errors.New("codec: malformed input")
	// ErrUnsupportedType reports a value or target the codec cannot handle,
	// such as an int given to [Raw].
	ErrUnsupportedType = errors.New("codec: unsupported type")
)
