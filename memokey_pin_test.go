package cachemgr_test

import (
	"fmt"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
)

type memoKinds struct {
	B   bool
	I8  int8
	U   uint
	F32 float32
	C   complex128
	S   string
}

// TestMemoKeyEncodings pins the encoding of every kind MemoKey accepts:
// keys are shared by processes and survive deploys, so a change here
// strands every memoized entry.
func TestMemoKeyEncodings(t *testing.T) {
	n := 5
	pn := &n
	var nilMap map[string]int
	var nilSlice []int
	var nilPtr *int
	var nilIface fmt.Stringer
	tests := []struct {
		name string
		arg  any
		want string
	}{
		{"nil", nil, "nil"},
		{"true", true, "true"},
		{"int", -42, "i-42"},
		{"int8", int8(-8), "i-8"},
		{"uint64", uint64(math.MaxUint64), "u18446744073709551615"},
		{"uintptr", uintptr(9), "u9"},
		{"float64", 2.5, "f2.5"},
		{"float32", float32(0.1), "f0.1"},
		{"negative zero", math.Copysign(0, -1), "f0"},
		{"NaN", math.NaN(), "fNaN"},
		{"complex64", complex64(complex(1, -2)), "c(1-2i)"},
		{"complex128 negative zero", complex(math.Copysign(0, -1), 3), "c(0+3i)"},
		{"string", "a \"b\"\n", "\"a \\\"b\\\"\\n\""},
		{"bytes", []byte{0, 0xab, 0xff}, "x00abff"},
		{"empty bytes", []byte{}, "[]"},
		{"byte array", [3]byte{1, 2, 0xfe}, "x0102fe"},
		{"int array", [2]int{1, 2}, "[i1,i2]"},
		{"slice", []any{1, "x", nil, 2.5}, "[i1,\"x\",nil,f2.5]"},
		{"empty slice", []string{}, "[]"},
		{"nil slice", nilSlice, "[]"},
		{"map", map[string]int{"b": 2, "a": 1}, "{\"a\":i1,\"b\":i2}"},
		{"map int keys", map[int]string{10: "x", 2: "y"}, "{i10:\"x\",i2:\"y\"}"},
		{"empty map", map[string]int{}, "{}"},
		{"nil map", nilMap, "{}"},
		{"pointer", pn, "i5"},
		{"pointer to pointer", &pn, "i5"},
		{"nil pointer", nilPtr, "nil"},
		{"nil interface in slice", []fmt.Stringer{nilIface}, "[nil]"},
		{"time", time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600)), "t\"2024-01-02T02:04:05.000000006Z\""},
		{"time pointer", &time.Time{}, "t\"0001-01-01T00:00:00Z\""},
		{"TextMarshaler", netip.MustParseAddr("10.0.0.1"), "m\"10.0.0.1\""},
		{"Stringer", memoUpper("abc"), "s\"ABC\""},
		{"struct", memoKinds{B: true, I8: -1, U: 7, F32: 1.5, C: complex(0, 1), S: "s"}, "{B:true,C:c(0+1i),F32:f1.5,I8:i-1,S:\"s\",U:u7}"},
		{"struct reordered", fieldsYX{Y: "y", X: 1}, "{X:i1,Y:\"y\"}"},
		{"query", memoQuery{Term: "t", Filters: map[string][]string{"k": {"v"}}}, "{Filters:{\"k\":[\"v\"]},Limit:nil,Options:[],Since:t\"0001-01-01T00:00:00Z\",Term:\"t\"}"},
		{"anonymous struct", struct{ A []int }{A: []int{3}}, "{A:[i3]}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cachemgr.MemoKey(tt.arg)
			if err != nil || got != tt.want {
				t.Errorf("MemoKey(%#v) = %q, %v; want %q", tt.arg, got, err, tt.want)
			}
		})
	}
}
