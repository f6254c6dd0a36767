package cachemgr

import (
	"reflect"
	"testing"
)

// TestManagerFields keeps the Manager small: what it holds is grouped into
// types of their own (settings, codecSet, the transport, lifecycle…), not
// added field by field.
func TestManagerFields(t *testing.T) {
	if n := reflect.TypeFor[Manager]().NumField(); n > 20 {
		t.Errorf("Manager has %d fields, want at most 20: group them into a cohesive type", n)
	}
}
