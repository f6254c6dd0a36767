package codec_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cachemgr/cachemgr/codec"
)

func TestRawAppend(t *testing.T) {
	b, s := []byte("bytes"), "string"
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"bytes", []byte("bytes"), "pre:bytes"},
		{"nil bytes", []byte(nil), "pre:"},
		{"string", "string", "pre:string"},
		{"empty string", "", "pre:"},
		{"bytes pointer", &b, "pre:bytes"},
		{"string pointer", &s, "pre:string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := codec.Raw().Append([]byte("pre:"), tt.v)
			if err != nil || string(got) != tt.want {
				t.Errorf("Append(%q, %#v) = %q, %v, want %q, nil", "pre:", tt.v, got, err, tt.want)
			}
		})
	}
}

func TestRawUnsupported(t *testing.T) {
	tests := []struct {
		name string
		v    any
	}{
		{"int", 42},
		{"nil", nil},
		{"rune slice", []rune("x")},
		{"named bytes", namedBytes("x")},
		{"pointer to pointer", new(*string)},
		{"any pointer", new(any)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := codec.Raw().Append(nil, tt.v); !errors.Is(err, codec.ErrUnsupportedType) {
				t.Errorf("Append(nil, %T) error = %v, want %v", tt.v, err, codec.ErrUnsupportedType)
			}
			if err := codec.Raw().Unmarshal([]byte("x"), tt.v); !errors.Is(err, codec.ErrUnsupportedType) {
				t.Errorf("Unmarshal(%q, %T) error = %v, want %v", "x", tt.v, err, codec.ErrUnsupportedType)
			}
		})
	}
}

type namedBytes []byte

func TestRawAppendNilPointer(t *testing.T) {
	tests := []struct {
		name string
		v    any
	}{
		{"bytes", (*[]byte)(nil)},
		{"string", (*string)(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := codec.Raw().Append(nil, tt.v); err == nil {
				t.Errorf("Append(nil, %T(nil)) error = nil, want error", tt.v)
			}
		})
	}
}

func TestRawUnmarshal(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"text", []byte("hello")},
		{"binary", []byte{0, 0xff, 0xc1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := bytes.Clone(tt.data)
			var b []byte
			var s string
			if err := codec.Raw().Unmarshal(data, &b); err != nil {
				t.Fatalf("Unmarshal(%q, *[]byte) error: %v", data, err)
			}
			if err := codec.Raw().Unmarshal(data, &s); err != nil {
				t.Fatalf("Unmarshal(%q, *string) error: %v", data, err)
			}
			// The caller may reuse its buffer once Unmarshal returns.
			for i := range data {
				data[i] = 'X'
			}
			if !bytes.Equal(b, tt.data) || b == nil {
				t.Errorf("Unmarshal(%q, *[]byte) = %#v, want %#v, non-nil", tt.data, b, tt.data)
			}
			if s != string(tt.data) {
				t.Errorf("Unmarshal(%q, *string) = %q, want %q", tt.data, s, tt.data)
			}
		})
	}
}

func TestRawUnmarshalDoesNotReuseTarget(t *testing.T) {
	old := []byte("previous value")
	b := old
	if err := codec.Raw().Unmarshal([]byte("new"), &b); err != nil {
		t.Fatalf("Unmarshal(%q, *[]byte) error: %v", "new", err)
	}
	if string(old) != "previous value" || string(b) != "new" {
		t.Errorf("Unmarshal(%q, &b) left old = %q, b = %q, want %q, %q", "new", old, b, "previous value", "new")
	}
}
