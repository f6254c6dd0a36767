package codec_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/codec"
)

type inner struct {
	Name string
	Tags []string
}

// record is a representative cached value.
type record struct {
	ID       int64
	Name     string
	Score    float64
	Active   bool
	At       time.Time
	Ptr      *int
	NilPtr   *inner
	Inner    inner
	Items    []inner
	Counts   map[string]int
	Nested   map[string][]string
	Empty    []string
	Nil      []string
	Blob     []byte
	EmptyStr string
}

func sampleRecord() record {
	n := 7
	return record{
		ID:     -42,
		Name:   "héllo, 世界 <&>",
		Score:  3.25,
		Active: true,
		At:     time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.UTC),
		Ptr:    &n,
		Inner:  inner{Name: "in", Tags: []string{"a", "b"}},
		Items: []inner{
			{Name: "x", Tags: []string{}},
			{Name: "y", Tags: nil},
		},
		Counts:   map[string]int{"a": 1, "b": -2},
		Nested:   map[string][]string{"k": {"v1", "v2"}, "empty": {}},
		Empty:    []string{},
		Nil:      nil,
		Blob:     []byte{0, 1, 2, 0xff},
		EmptyStr: "",
	}
}

var structuredCodecs = []struct {
	name string
	c    codec.Codec
}{
	{"msgpack", codec.Msgpack()},
	{"json", codec.JSON()},
}

func TestIdentity(t *testing.T) {
	tests := []struct {
		c        codec.Codec
		wantID   byte
		wantName string
	}{
		{codec.Msgpack(), codec.MsgpackID, "msgpack"},
		{codec.JSON(), codec.JSONID, "json"},
		{codec.Raw(), codec.RawID, "raw"},
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

// roundTrip appends v after a prefix, checks the prefix survived, and
// decodes the rest into a new value of v's type.
func roundTrip(t *testing.T, c codec.Codec, v any) any {
	t.Helper()
	prefix := []byte("prefix")
	b, err := c.Append(bytes.Clone(prefix), v)
	if err != nil {
		t.Fatalf("Append(%T) error: %v", v, err)
	}
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("Append(%q, %T) = %q, want prefix kept", prefix, v, b)
	}
	data := bytes.Clone(b[len(prefix):])
	ptr := reflect.New(reflect.TypeOf(v))
	if err := c.Unmarshal(data, ptr.Interface()); err != nil {
		t.Fatalf("Unmarshal(%x, %T) error: %v", data, ptr.Interface(), err)
	}
	// The decoded value must not alias data.
	for i := range data {
		data[i] = 0xc1
	}
	return ptr.Elem().Interface()
}

func TestRoundTrip(t *testing.T) {
	full := sampleRecord()
	tests := []struct {
		name string
		in   any
	}{
		{"empty string", ""},
		{"string", "héllo, 世界 <&>"},
		{"int64", int64(-1 << 40)},
		{"uint64", uint64(1<<64 - 1)},
		{"float64", 3.5},
		{"bool", true},
		{"nil slice", []string(nil)},
		{"empty slice", []string{}},
		{"nil bytes", []byte(nil)},
		{"empty bytes", []byte{}},
		{"bytes", []byte("abc")},
		{"map", map[string]int{"a": 1, "b": 2}},
		{"nested map", map[string]map[string][]int{"x": {"y": {1, 2}, "z": nil}}},
		{"nil map", map[string]int(nil)},
		{"zero struct", record{}},
		{"struct", full},
		{"pointer to struct", &full},
		{"nil pointer", (*record)(nil)},
		{"slice of structs", []record{full, {}, full}},
		{"slice of pointers", []*inner{{Name: "a"}, nil}},
	}
	for _, c := range structuredCodecs {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				got := normalizeTimes(roundTrip(t, c.c, tt.in))
				if want := normalizeTimes(tt.in); !reflect.DeepEqual(got, want) {
					t.Errorf("Unmarshal(Append(%#v)) = %#v, want %#v", tt.in, got, want)
				}
			})
		}
	}
}

// normalizeTimes returns v with record times in UTC, so that DeepEqual
// compares instants; TestTimeRoundTrip checks them with Equal.
func normalizeTimes(v any) any {
	switch v := v.(type) {
	case record:
		v.At = v.At.UTC()
		return v
	case *record:
		if v == nil {
			return v
		}
		r := normalizeTimes(*v).(record)
		return &r
	case []record:
		out := make([]record, len(v))
		for i := range v {
			out[i] = normalizeTimes(v[i]).(record)
		}
		return out
	}
	return v
}

func TestTimeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
	}{
		{"zero", time.Time{}},
		{"unix epoch", time.Unix(0, 0)},
		{"seconds only", time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"nanoseconds", time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.UTC)},
		{"fixed zone", time.Date(2024, 6, 1, 12, 0, 0, 1, time.FixedZone("X", -7*3600))},
		{"before 1970", time.Date(1901, 12, 13, 20, 45, 52, 999999999, time.UTC)},
		{"after 2106", time.Date(2500, 1, 1, 0, 0, 0, 5, time.UTC)},
		{"monotonic", time.Now()},
	}
	for _, c := range structuredCodecs {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				got := roundTrip(t, c.c, tt.in).(time.Time)
				if !got.Equal(tt.in) {
					t.Errorf("Unmarshal(Append(%v)) = %v, want %v", tt.in, got, tt.in)
				}
				r := roundTrip(t, c.c, record{At: tt.in}).(record)
				if !r.At.Equal(tt.in) {
					t.Errorf("Unmarshal(Append(record{At: %v})).At = %v, want %v", tt.in, r.At, tt.in)
				}
			})
		}
	}
}

func TestUnmarshalNonPointer(t *testing.T) {
	tests := []struct {
		name string
		c    codec.Codec
		v    any
	}{
		{"msgpack/value", codec.Msgpack(), 0},
		{"msgpack/nil", codec.Msgpack(), nil},
		{"msgpack/nil pointer", codec.Msgpack(), (*int)(nil)},
		{"json/value", codec.JSON(), 0},
		{"json/nil", codec.JSON(), nil},
		{"json/nil pointer", codec.JSON(), (*int)(nil)},
		{"raw/nil bytes pointer", codec.Raw(), (*[]byte)(nil)},
		{"raw/nil string pointer", codec.Raw(), (*string)(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := tt.c.Append(nil, "x")
			if err != nil {
				t.Fatalf("Append(nil, %q) error: %v", "x", err)
			}
			if err := tt.c.Unmarshal(data, tt.v); err == nil {
				t.Errorf("Unmarshal(%q, %#v) = nil, want error", data, tt.v)
			}
		})
	}
}

func TestAppendUnsupported(t *testing.T) {
	tests := []struct {
		name string
		c    codec.Codec
		v    any
	}{
		{"msgpack/chan", codec.Msgpack(), make(chan int)},
		{"msgpack/func", codec.Msgpack(), func() {}},
		{"json/chan", codec.JSON(), make(chan int)},
		{"json/func", codec.JSON(), func() {}},
		{"json/NaN", codec.JSON(), nanFloat()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := tt.c.Append(dst, tt.v)
			if err == nil {
				t.Fatalf("Append(%q, %T) error = nil, want error", dst, tt.v)
			}
			if string(got) != "keep" {
				t.Errorf("Append(%q, %T) = %q, want %q", dst, tt.v, got, "keep")
			}
		})
	}
}

func nanFloat() float64 {
	zero := 0.0
	return zero / zero
}

type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error)    { panic("boom") }
func (*panicky) UnmarshalJSON(b []byte) error   { panic("boom") }
func (panicky) MarshalMsgpack() ([]byte, error) { panic("boom") }
func (*panicky) UnmarshalMsgpack(b []byte) error {
	panic("boom")
}

func TestPanicsBecomeErrors(t *testing.T) {
	for _, c := range structuredCodecs {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.c.Append(nil, panicky{}); err == nil {
				t.Errorf("Append(nil, panicky{}) error = nil, want error")
			}
			data, err := c.c.Append(nil, "x")
			if err != nil {
				t.Fatalf("Append(nil, %q) error: %v", "x", err)
			}
			var p panicky
			if err := c.c.Unmarshal(data, &p); err == nil {
				t.Errorf("Unmarshal(%q, *panicky) = nil, want error", data)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	want := sampleRecord()
	for _, c := range structuredCodecs {
		t.Run(c.name, func(t *testing.T) {
			errs := make(chan error, 16)
			for range 16 {
				go func() {
					var err error
					for range 200 {
						var b []byte
						if b, err = c.c.Append(nil, &want); err != nil {
							break
						}
						var got record
						if err = c.c.Unmarshal(b, &got); err != nil {
							break
						}
						if !reflect.DeepEqual(normalizeTimes(got), normalizeTimes(want)) {
							err = errors.New("decoded record differs")
							break
						}
					}
					errs <- err
				}()
			}
			for range 16 {
				if err := <-errs; err != nil {
					t.Errorf("Append/Unmarshal under concurrency: %v", err)
				}
			}
		})
	}
}
