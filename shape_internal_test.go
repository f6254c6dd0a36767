package cachemgr

import (
	"reflect"
	"testing"
)

// TestCopiedByValue: only types that assignment copies whole let the
// callers of a shared load take the loaded value itself; anything holding
// a reference (one caller's change would show in another's value) is
// decoded per caller.
func TestCopiedByValue(t *testing.T) {
	type plain struct {
		ID    int
		Name  string
		Price float64
		Codes [4]uint16
		Inner struct{ OK bool }
	}
	type withSlice struct {
		ID   int
		Tags []string
	}
	type withPtr struct{ P *int }
	type withMap struct{ M map[string]int }
	type withAny struct{ V any }
	cases := []struct {
		t    reflect.Type
		want bool
	}{
		{reflect.TypeFor[int](), true},
		{reflect.TypeFor[string](), true},
		{reflect.TypeFor[plain](), true},
		{reflect.TypeFor[[3]plain](), true},
		{reflect.TypeFor[[]byte](), false},
		{reflect.TypeFor[withSlice](), false},
		{reflect.TypeFor[withPtr](), false},
		{reflect.TypeFor[withMap](), false},
		{reflect.TypeFor[withAny](), false},
		{reflect.TypeFor[*plain](), false},
		{reflect.TypeFor[[2][]int](), false},
	}
	for _, c := range cases {
		if got := copiedByValue(c.t); got != c.want {
			t.Errorf("copiedByValue(%v) = %v, want %v", c.t, got, c.want)
		}
	}
}
