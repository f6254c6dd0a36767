package cachemgr

import (
	"encoding"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// MemoKey returns the cache key Memoize derives from arg, so a caller can
// Delete the entry of one argument. The key is deterministic across runs and
// processes, and type-tagged: 1, uint(1), 1.0, "1" and true all differ.
//
//   - Strings, booleans, integers, floats and complex numbers stand for
//     themselves; -0 and +0 are one key.
//   - time.Time is its instant, in UTC RFC 3339 with nanoseconds: the zone
//     and the monotonic reading do not count.
//   - Other types with a MarshalText method (encoding.TextMarshaler), then
//     with a String method (fmt.Stringer), are that text. It must identify
//     the value, or arguments that differ will share a result. A struct
//     that may have the method from an embedded field (struct{ time.Time;
//     ID int }) is an error, since the text would leave its other fields
//     out.
//   - Structs are their exported fields sorted by name, so two struct types
//     with the same fields in another order give the same key. A struct
//     with an unexported field that holds data is an error: leaving it out
//     could make different arguments share a result.
//   - Maps are their entries sorted by key, never in Go's iteration order.
//   - Slices and arrays are their elements in order; []byte is hex. A nil
//     slice or map is the same as an empty one.
//   - Pointers and interfaces stand for what they point to; nil is "nil".
//
// Functions, channels, unsafe pointers, cycles and nesting deeper than 1000
// levels return an error wrapping ErrInvalidOption. MemoKey never panics,
// even when a MarshalText or String method does. Long keys are fine: the
// cache hashes keys over WithMaxKeyLen.
func MemoKey(arg any) (string, error) {
	e := keyEncoder{}
	if err := e.encode(reflect.ValueOf(arg), 0); err != nil {
		return "", invalidKey(err, fmt.Sprintf("memo key of %T", arg))
	}
	return string(e.b), nil
}

// maxKeyDepth bounds how deeply MemoKey follows nested values, so a long
// linked list cannot exhaust the stack.
const maxKeyDepth = 1000

var (
	timeType          = reflect.TypeFor[time.Time]()
	byteType          = reflect.TypeFor[byte]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	stringerType      = reflect.TypeFor[fmt.Stringer]()
)

// keyEncoder writes the MemoKey encoding of a value. Every encoding is
// self-delimiting (a tag letter and a number, a quoted string, or a
// bracketed list), so two values with different encodings of their parts
// never produce the same key.
type keyEncoder struct {
	b []byte
	// onPath holds the pointers, maps and slices being encoded, to tell a
	// cycle from a value shared by two fields.
	onPath map[visit]struct{}
}

type visit struct {
	ptr unsafe.Pointer
	typ reflect.Type
	len int
}

// keyError is an unsupported value, with the path that led to it.
type keyError struct {
	path string
	msg  string
}

func (e *keyError) Error() string { return e.path + ": " + e.msg }

// invalidKey turns a keyError into an error wrapping ErrInvalidOption that
// names what could not be keyed (subject) and where; other errors pass.
func invalidKey(err error, subject string) error {
	ke, ok := err.(*keyError)
	if !ok {
		return err
	}
	where := ""
	if ke.path != "" {
		where = " at " + ke.path
	}
	return fmt.Errorf("%w: %s%s: %s", ErrInvalidOption, subject, where, ke.msg)
}

// at prefixes the path of a keyError with seg.
func at(err error, seg string) error {
	if ke, ok := err.(*keyError); ok {
		ke.path = seg + ke.path
	}
	return err
}

func (e *keyEncoder) encode(v reflect.Value, depth int) error {
	if depth > maxKeyDepth {
		return &keyError{msg: fmt.Sprintf("nested deeper than %d levels", maxKeyDepth)}
	}
	for v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	switch {
	case !v.IsValid() || (v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer) && v.IsNil():
		e.b = append(e.b, "nil"...)
		return nil
	case v.Kind() == reflect.Pointer:
		// Followed before looking for methods, so *time.Time is a time.
		return e.pointer(v, depth)
	case v.Type() == timeType && v.CanInterface():
		tm := v.Interface().(time.Time)
		e.b = append(e.b, 't')
		e.b = strconv.AppendQuote(e.b, tm.UTC().Format(time.RFC3339Nano))
		return nil
	}
	if ok, err := e.text(v); ok {
		return err
	}
	if e.scalar(v) {
		return nil
	}
	return e.composite(v, depth)
}

// pointer encodes what the non-nil pointer v points to.
func (e *keyEncoder) pointer(v reflect.Value, depth int) error {
	leave, err := e.enter(v, 0)
	if err != nil {
		return err
	}
	defer leave()
	return e.encode(v.Elem(), depth+1)
}

// scalar encodes a bool, number or string, reporting whether v is one.
func (e *keyEncoder) scalar(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Bool:
		e.b = strconv.AppendBool(e.b, v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.b = append(e.b, 'i')
		e.b = strconv.AppendInt(e.b, v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.b = append(e.b, 'u')
		e.b = strconv.AppendUint(e.b, v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		e.b = append(e.b, 'f')
		e.b = strconv.AppendFloat(e.b, noNegZero(v.Float()), 'g', -1, v.Type().Bits())
	case reflect.Complex64, reflect.Complex128:
		c := v.Complex()
		e.b = append(e.b, 'c')
		e.b = append(e.b, strconv.FormatComplex(complex(noNegZero(real(c)), noNegZero(imag(c))), 'g', -1, v.Type().Bits())...)
	case reflect.String:
		e.b = strconv.AppendQuote(e.b, v.String())
	default:
		return false
	}
	return true
}

// composite encodes a slice, array, map or struct; any other kind left
// (func, chan, unsafe pointer) is an error.
func (e *keyEncoder) composite(v reflect.Value, depth int) error {
	switch v.Kind() {
	case reflect.Slice:
		if v.Len() == 0 {
			e.b = append(e.b, "[]"...)
			return nil
		}
		leave, err := e.enter(v, v.Len())
		if err != nil {
			return err
		}
		defer leave()
		return e.list(v, depth)
	case reflect.Array:
		return e.list(v, depth)
	case reflect.Map:
		if v.Len() == 0 {
			e.b = append(e.b, "{}"...)
			return nil
		}
		leave, err := e.enter(v, 0)
		if err != nil {
			return err
		}
		defer leave()
		return e.dict(v, depth)
	case reflect.Struct:
		return e.record(v, depth)
	}
	return unsupported(v.Type())
}

// unsupported is the error for a kind MemoKey cannot encode.
func unsupported(t reflect.Type) error {
	return &keyError{msg: fmt.Sprintf("%v is not supported", t)}
}

// noNegZero maps -0 to 0, so the two equal values share a key.
func noNegZero(f float64) float64 {
	if f == 0 {
		return 0
	}
	return f
}

// enter records that v (a pointer, slice or map) is being encoded, and
// reports a cycle if it already is; leave undoes it.
func (e *keyEncoder) enter(v reflect.Value, n int) (leave func(), err error) {
	k := visit{ptr: v.UnsafePointer(), typ: v.Type(), len: n}
	if _, ok := e.onPath[k]; ok {
		return nil, &keyError{msg: fmt.Sprintf("cycle through %v", v.Type())}
	}
	if e.onPath == nil {
		e.onPath = map[visit]struct{}{}
	}
	e.onPath[k] = struct{}{}
	return func() { delete(e.onPath, k) }, nil
}

// text encodes v by its MarshalText or String method, reporting whether it
// has one. A method with a pointer receiver is called through v's address,
// or on a copy when v has none.
func (e *keyEncoder) text(v reflect.Value) (bool, error) {
	t := v.Type()
	tag, viaPtr := textMethod(t)
	if tag == 0 {
		return false, nil
	}
	if err := promotedMethod(t, tag); err != nil {
		return true, err
	}
	if viaPtr {
		v = addressOf(v)
	}
	if !v.CanInterface() {
		return true, &keyError{msg: fmt.Sprintf("%v is not accessible", t)}
	}
	s, err := callText(v.Interface(), tag)
	if err != nil {
		return true, &keyError{msg: err.Error()}
	}
	e.b = append(e.b, tag)
	e.b = strconv.AppendQuote(e.b, s)
	return true, nil
}

// textMethod returns the tag of the method that gives t's key: 'm' for
// MarshalText, 's' for String, 0 for neither; viaPtr when only *t has it.
func textMethod(t reflect.Type) (tag byte, viaPtr bool) {
	switch pt := reflect.PointerTo(t); {
	case t.Implements(textMarshalerType):
		return 'm', false
	case t.Implements(stringerType):
		return 's', false
	case pt.Implements(textMarshalerType):
		return 'm', true
	case pt.Implements(stringerType):
		return 's', true
	}
	return 0, false
}

// promotedMethod returns an error when struct type t may have its method
// for tag from an embedded field (see promoter).
func promotedMethod(t reflect.Type, tag byte) error {
	if f, ok := promoter(t, tag); ok {
		return &keyError{msg: fmt.Sprintf("%v may have its %s method from embedded field %s, which would leave the other fields out of the key; use MemoizeKey", t, methodName(tag), f)}
	}
	return nil
}

// promoter returns the embedded field of struct type t that could have
// given t its method for tag: struct{ time.Time; ID int } has Time's
// MarshalText, and a key made by it would leave ID out. A struct that
// declares the method itself while embedding one is refused too: reflect
// cannot tell the two apart.
func promoter(t reflect.Type, tag byte) (string, bool) {
	if t.Kind() != reflect.Struct {
		return "", false
	}
	iface := stringerType
	if tag == 'm' {
		iface = textMarshalerType
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && (f.Type.Implements(iface) || reflect.PointerTo(f.Type).Implements(iface)) {
			return f.Name, true
		}
	}
	return "", false
}

func methodName(tag byte) string {
	if tag == 'm' {
		return "MarshalText"
	}
	return "String"
}

// addressOf returns a pointer to v, or to a copy of it.
func addressOf(v reflect.Value) reflect.Value {
	if v.CanAddr() {
		return v.Addr()
	}
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	return p
}

// callText calls MarshalText (tag 'm') or String on x, turning a panic into
// an error: a nil pointer inside a value, or a buggy method, must not crash
// the caller.
func callText(x any, tag byte) (s string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%T.%s panicked: %v", x, methodName(tag), r)
		}
	}()
	if tag == 's' {
		return x.(fmt.Stringer).String(), nil
	}
	b, err := x.(encoding.TextMarshaler).MarshalText()
	if err != nil {
		return "", fmt.Errorf("%T.MarshalText: %v", x, err)
	}
	return string(b), nil
}

const hexDigits = "0123456789abcdef"

// list encodes the elements of a slice or array in order.
func (e *keyEncoder) list(v reflect.Value, depth int) error {
	if v.Type().Elem() == byteType {
		e.b = append(e.b, 'x')
		if v.Kind() == reflect.Slice {
			e.b = hex.AppendEncode(e.b, v.Bytes())
			return nil
		}
		for i := range v.Len() {
			b := v.Index(i).Uint()
			e.b = append(e.b, hexDigits[b>>4], hexDigits[b&15])
		}
		return nil
	}
	e.b = append(e.b, '[')
	for i := range v.Len() {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		if err := e.encode(v.Index(i), depth+1); err != nil {
			return at(err, "["+strconv.Itoa(i)+"]")
		}
	}
	e.b = append(e.b, ']')
	return nil
}

// dict encodes a map's entries sorted by their encoded keys (then values,
// for NaN keys, which can repeat).
func (e *keyEncoder) dict(v reflect.Value, depth int) error {
	type entry struct{ k, v string }
	entries := make([]entry, 0, v.Len())
	start := len(e.b)
	for it := v.MapRange(); it.Next(); {
		if err := e.encode(it.Key(), depth+1); err != nil {
			return at(err, "[key]")
		}
		k := string(e.b[start:])
		e.b = e.b[:start]
		if err := e.encode(it.Value(), depth+1); err != nil {
			return at(err, "["+k+"]")
		}
		entries = append(entries, entry{k, string(e.b[start:])})
		e.b = e.b[:start]
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	e.b = append(e.b, '{')
	for i, en := range entries {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.b = append(e.b, en.k...)
		e.b = append(e.b, ':')
		e.b = append(e.b, en.v...)
	}
	e.b = append(e.b, '}')
	return nil
}

// record encodes a struct's exported fields sorted by name. Field names
// start with an upper-case letter and encoded map keys never do, so a
// struct and a map never share an encoding.
func (e *keyEncoder) record(v reflect.Value, depth int) error {
	t := v.Type()
	fields, err := keyFields(t)
	if err != nil {
		return err
	}
	e.b = append(e.b, '{')
	for n, i := range fields {
		if n > 0 {
			e.b = append(e.b, ',')
		}
		name := t.Field(i).Name
		e.b = append(e.b, name...)
		e.b = append(e.b, ':')
		if err := e.encode(v.Field(i), depth+1); err != nil {
			return at(err, "."+name)
		}
	}
	e.b = append(e.b, '}')
	return nil
}

// keyFields returns the indexes of the fields of struct type t that make
// its key, sorted by name, or an error for an unexported field that holds
// data and would be left out.
func keyFields(t reflect.Type) ([]int, error) {
	fields := make([]int, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		switch {
		case f.IsExported():
			fields = append(fields, i)
		case f.Name == "_" || f.Type.Size() == 0:
			// Holds no data.
		default:
			return nil, &keyError{msg: fmt.Sprintf("unexported field %s of %v would be left out of the key; use MemoizeKey", f.Name, t)}
		}
	}
	slices.SortFunc(fields, func(a, b int) int { return strings.Compare(t.Field(a).Name, t.Field(b).Name) })
	return fields, nil
}
