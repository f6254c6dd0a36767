package cachemgr

import (
	"fmt"
	"reflect"
)

// keyableType returns an error wrapping ErrInvalidOption when MemoKey
// could key no value of type t but nil or empty ones: t holds, outside any
// interface, a type that MemoKey refuses whatever its value. It follows
// the order of keyEncoder.encode, so it refuses exactly what encode would
// refuse for every non-nil, non-empty value.
func keyableType(t reflect.Type) error {
	if err := (typeChecker{}).check(t); err != nil {
		return invalidKey(err, fmt.Sprintf("argument type %v cannot be keyed", t))
	}
	return nil
}

// typeChecker walks a type as keyEncoder walks its values. It holds the
// types already checked, so a recursive type ends the walk.
type typeChecker map[reflect.Type]bool

func (tc typeChecker) check(t reflect.Type) error {
	if tc[t] {
		return nil
	}
	tc[t] = true
	switch {
	case t.Kind() == reflect.Interface:
		return nil // what it holds is checked at each call
	case t.Kind() == reflect.Pointer:
		return tc.check(t.Elem())
	case t == timeType:
		return nil
	}
	if tag, _ := textMethod(t); tag != 0 {
		return promotedMethod(t, tag)
	}
	return tc.composite(t)
}

// composite checks the parts of t, and refuses the kinds encode cannot
// encode. Scalars are always keyable.
func (tc typeChecker) composite(t reflect.Type) error {
	switch t.Kind() {
	case reflect.Array:
		if t.Len() == 0 {
			return nil
		}
		return at(tc.check(t.Elem()), "[]")
	case reflect.Slice:
		return at(tc.check(t.Elem()), "[]")
	case reflect.Map:
		if err := tc.check(t.Key()); err != nil {
			return at(err, "[key]")
		}
		return at(tc.check(t.Elem()), "[value]")
	case reflect.Struct:
		return tc.record(t)
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return unsupported(t)
	}
	return nil
}

// record checks the fields of struct type t that make its key.
func (tc typeChecker) record(t reflect.Type) error {
	fields, err := keyFields(t)
	if err != nil {
		return err
	}
	for _, i := range fields {
		if err := tc.check(t.Field(i).Type); err != nil {
			return at(err, "."+t.Field(i).Name)
		}
	}
	return nil
}
