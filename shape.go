package cachemgr

import (
	"errors"
	"hash/fnv"
	"reflect"
	"strconv"
)

// Two processes may use one cache name for two shapes of a type: a rolling
// deploy that adds, renames or retypes a field. msgpack and JSON decode one
// shape's bytes into the other without an error, leaving fields empty or
// wrong. So every stored value carries a fingerprint of its type's shape,
// and a reader whose type has another one treats the entry as a miss: it
// loads its own value, and leaves the entry for the processes it belongs to.

// Shape returns the fingerprint of T's shape that a Cache[T] stores with
// every value and checks on every read: a value stored with another is a
// miss (Stats().OtherShape). Tools that write entries for cachemgr to read,
// or inspect them, can use it.
func Shape[T any]() uint32 { return shapeOf(reflect.TypeFor[T]()) }

// errOtherShape is the miss of an entry written for another shape of T.
var errOtherShape = errors.New("entry written for another shape of the type")

// shapeOf returns the fingerprint of t's shape: its kind and, recursively,
// its elements, keys and struct fields with their names, embedding and tags
// (where codecs read their names and options). Two types with the same
// fingerprint decode each other's values as their own would decode; a type
// that changes in any way a codec can see gets another.
func shapeOf(t reflect.Type) uint32 {
	h := fnv.New32a()
	writeShape(h, t, map[reflect.Type]int{})
	return h.Sum32()
}

// shapeWriter is where writeShape describes a type.
type shapeWriter interface {
	Write(p []byte) (int, error)
}

func writeShape(w shapeWriter, t reflect.Type, seen map[reflect.Type]int) {
	if i, ok := seen[t]; ok {
		// A recursive type: refer back to where it began.
		w.Write([]byte("@" + strconv.Itoa(i) + ";"))
		return
	}
	seen[t] = len(seen)
	w.Write([]byte(t.Kind().String() + "("))
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice:
		writeShape(w, t.Elem(), seen)
	case reflect.Array:
		w.Write([]byte(strconv.Itoa(t.Len()) + ","))
		writeShape(w, t.Elem(), seen)
	case reflect.Map:
		writeShape(w, t.Key(), seen)
		writeShape(w, t.Elem(), seen)
	case reflect.Struct:
		writeFields(w, t, seen)
	case reflect.Interface:
		// Any value may be inside: only the kind is known.
	default:
		// A named scalar type decodes like its kind; a type with its own
		// encoding (time.Time, a custom marshaler) differs by name.
		w.Write([]byte(t.PkgPath() + "." + t.Name()))
	}
	w.Write([]byte(");"))
}

// writeFields describes the fields of struct type t that a codec sees,
// the exported and the embedded ones: name, tag, whether embedded, shape.
func writeFields(w shapeWriter, t reflect.Type, seen map[reflect.Type]int) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue // no codec sees it
		}
		w.Write([]byte(f.Name + " " + strconv.Quote(string(f.Tag)) + " " + strconv.FormatBool(f.Anonymous) + ":"))
		writeShape(w, f.Type, seen)
	}
}

// copiedByValue reports whether assigning a value of t copies all of it:
// no pointer, slice, map, channel, function or interface anywhere inside
// (strings share their bytes, but those cannot be changed). Callers that
// share a load of such a T each get the loaded value itself, with no
// private decode.
func copiedByValue(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128, reflect.String:
		return true
	case reflect.Array:
		return copiedByValue(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !copiedByValue(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}
