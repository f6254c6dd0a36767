package codec_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/cachemgr/cachemgr/codec"
)

func TestJSONAppendMatchesMarshal(t *testing.T) {
	tests := []struct {
		name string
		v    any
	}{
		{"string with html", "<a href=\"x\">&</a>"},
		{"record", sampleRecord()},
		{"nil", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatalf("json.Marshal(%T) error: %v", tt.v, err)
			}
			got, err := codec.JSON().Append(nil, tt.v)
			if err != nil || string(got) != string(want) {
				t.Errorf("Append(nil, %T) = %s, %v, want %s, nil", tt.v, got, err, want)
			}
		})
	}
}

func TestJSONMalformed(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"space", " "},
		{"truncated object", `{"ID":1`},
		{"trailing comma", `[1,]`},
		{"bad literal", `nul`},
		{"trailing garbage", `{} x`},
		{"invalid utf8 outside string", "\xff"},
		{"msgpack", "\x81\xa2ID\x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r record
			err := codec.JSON().Unmarshal([]byte(tt.data), &r)
			if !errors.Is(err, codec.ErrMalformed) {
				t.Errorf("Unmarshal(%q, *record) error = %v, want %v", tt.data, err, codec.ErrMalformed)
			}
			var se *json.SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("Unmarshal(%q, *record) error = %v, want a *json.SyntaxError", tt.data, err)
			}
		})
	}
}

func TestJSONTypeMismatchIsNotMalformed(t *testing.T) {
	var n int
	err := codec.JSON().Unmarshal([]byte(`"text"`), &n)
	if err == nil || errors.Is(err, codec.ErrMalformed) {
		t.Errorf("Unmarshal(%q, *int) error = %v, want a type error not wrapping %v", `"text"`, err, codec.ErrMalformed)
	}
}

func FuzzJSONUnmarshal(f *testing.F) {
	enc, err := codec.JSON().Append(nil, sampleRecord())
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"", "null", "{}", "[]", `{"ID":1,"Name":"x"}`, `[1,[2,[3]]]`,
		`{"At":"not a time"}`, `"\ud800"`, `1e999`, `{"Counts":{"a":"b"}}`,
		string(enc), string(enc[:len(enc)/2]),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r record
		errRecord := codec.JSON().Unmarshal(data, &r)
		var v any
		errAny := codec.JSON().Unmarshal(data, &v)
		valid := json.Valid(data)
		if got := errors.Is(errAny, codec.ErrMalformed); got == valid {
			t.Errorf("Unmarshal(%q, *any) error = %v; json.Valid = %v", data, errAny, valid)
		}
		if errors.Is(errRecord, codec.ErrMalformed) == valid {
			t.Errorf("Unmarshal(%q, *record) error = %v; json.Valid = %v", data, errRecord, valid)
		}
		if errAny != nil {
			return
		}
		// Valid JSON re-encodes and decodes to the same value.
		b, err := codec.JSON().Append(nil, v)
		if err != nil {
			t.Fatalf("Append(nil, %#v) error: %v", v, err)
		}
		var again any
		if err := codec.JSON().Unmarshal(b, &again); err != nil {
			t.Fatalf("Unmarshal(%q, *any) error: %v", b, err)
		}
		if !reflect.DeepEqual(again, v) {
			t.Errorf("Unmarshal(Append(%#v)) = %#v, want %#v", v, again, v)
		}
	})
}
