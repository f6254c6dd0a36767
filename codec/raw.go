package codec

import "fmt"

// Raw returns a codec that stores bytes and strings as they are, at no
// encoding cost.
//
// Append accepts a []byte, string, *[]byte or *string; Unmarshal accepts a
// *[]byte or *string. Other types return an error wrapping
// [ErrUnsupportedType]. Unmarshal always copies data into newly allocated
// memory, so the caller may reuse data and the previous contents of *[]byte
// are left untouched. Raw cannot tell a nil slice from an empty one: both are
// stored as zero bytes, and zero bytes decode into *[]byte as an empty,
// non-nil slice.
//
// Raw is safe for concurrent use.
func Raw() Codec { return rawCodec{} }

type rawCodec struct{}

func (rawCodec) ID() byte     { return RawID }
func (rawCodec) Name() string { return "raw" }

func (rawCodec) Append(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case []byte:
		return append(dst, v...), nil
	case string:
		return append(dst, v...), nil
	case *[]byte:
		if v != nil {
			return append(dst, *v...), nil
		}
	case *string:
		if v != nil {
			return append(dst, *v...), nil
		}
	default:
		return dst, fmt.Errorf("raw: %w %T", ErrUnsupportedType, v)
	}
	return dst, fmt.Errorf("raw: append nil %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	switch v := v.(type) {
	case *[]byte:
		if v != nil {
			*v = append(make([]byte, 0, len(data)), data...)
			return nil
		}
	case *string:
		if v != nil {
			*v = string(data)
			return nil
		}
	default:
		return fmt.Errorf("raw: %w %T", ErrUnsupportedType, v)
	}
	return fmt.Errorf("raw: unmarshal into nil %T", v)
}
