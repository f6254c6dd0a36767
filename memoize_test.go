package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// Two struct types with the same fields in another order.
type (
	fieldsXY struct {
		X int
		Y string
	}
	fieldsYX struct {
		Y string
		X int
	}
)

// memoUpper is a type whose String method decides its key.
type memoUpper string

func (u memoUpper) String() string { return strings.ToUpper(string(u)) }

// memoQuery is a typical memoized argument: nested, with a map and a time.
type memoQuery struct {
	Term    string
	Filters map[string][]string
	Since   time.Time
	Limit   *int
	_       struct{}
	noData  struct{}
	Options []fieldsXY
}

// memoNode builds linked lists and cycles.
type memoNode struct {
	Next *memoNode
}

// memoSecret has an unexported field that holds data.
type memoSecret struct {
	Public string
	secret string
}

// memoBadText fails to marshal.
type memoBadText struct{}

func (memoBadText) MarshalText() ([]byte, error) { return nil, errors.New("no text") }

// memoPanicky's String method panics on a nil map.
type memoPanicky struct{ M map[string]int }

func (p memoPanicky) String() string {
	p.M["x"]++ // panics: assignment to entry in nil map
	return ""
}

func memoKey(t *testing.T, arg any) string {
	t.Helper()
	k, err := cachemgr.MemoKey(arg)
	if err != nil {
		t.Fatalf("MemoKey(%#v) error = %v", arg, err)
	}
	return k
}

func TestMemoKeySame(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	now := time.Now() // carries a monotonic reading
	one := 1
	shared := 7
	tests := []struct {
		name string
		a, b any
	}{
		{"struct fields reordered", fieldsXY{X: 1, Y: "a"}, fieldsYX{Y: "a", X: 1}},
		{"pointer followed", &fieldsXY{X: 1}, fieldsXY{X: 1}},
		{"pointer to int", &one, 1},
		{"shared pointer is no cycle", struct{ A, B *int }{&shared, &shared}, struct{ A, B int }{7, 7}},
		{"time zone ignored", at, at.In(time.FixedZone("X", 3600))},
		{"monotonic reading ignored", now, now.Round(0)},
		{"*time.Time", &at, at},
		{"nil and empty slice", []int(nil), []int{}},
		{"nil and empty map", map[string]int(nil), map[string]int{}},
		{"negative zero", math.Copysign(0, -1), 0.0},
		{"integer widths", int8(5), int64(5)},
		{"map order", map[string]int{"a": 1, "b": 2, "c": 3}, mapInOrder([]string{"c", "a", "b"})},
		{"String method", memoUpper("ab"), memoUpper("AB")},
		{"method with a pointer receiver", *big.NewInt(12345), bigFromString("12345")},
		{"MarshalText method", netip.MustParseAddr("10.0.0.1"), netip.AddrFrom4([4]byte{10, 0, 0, 1})},
		{"blank and empty fields", memoQuery{Term: "x"}, memoQuery{Term: "x", Filters: map[string][]string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ka, kb := memoKey(t, tt.a), memoKey(t, tt.b); ka != kb {
				t.Errorf("MemoKey(%#v) = %q, MemoKey(%#v) = %q; want equal", tt.a, ka, tt.b, kb)
			}
		})
	}
}

func mapInOrder(keys []string) map[string]int {
	m := map[string]int{}
	for _, k := range keys {
		m[k] = int(k[0]-'a') + 1
	}
	return m
}

func bigFromString(s string) big.Int {
	var n big.Int
	n.SetString(s, 10)
	return n
}

func TestMemoKeyDistinct(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name string
		a, b any
	}{
		{"int and string", 1, "1"},
		{"int and uint", 1, uint(1)},
		{"int and float", 1, 1.0},
		{"bool and string", true, "true"},
		{"nil and empty string", nil, ""},
		{"nil pointer and pointer to zero", (*int)(nil), new(int)},
		{"bytes and string", []byte("ab"), "ab"},
		{"string with a comma", []string{"a,b"}, []string{"a", "b"}},
		{"string with a quote", []string{`a","b`}, []string{"a", "b"}},
		{"map key with a colon", map[string]string{"a:b": "c"}, map[string]string{"a": "b:c"}},
		{"nesting", [][]int{{1}, {2}}, [][]int{{1, 2}}},
		{"struct and map", fieldsXY{X: 1}, map[string]any{"X": 1, "Y": ""}},
		{"field values", fieldsXY{X: 1, Y: "a"}, fieldsXY{X: 1, Y: "b"}},
		{"one nanosecond", at, at.Add(time.Nanosecond)},
		{"NaN and Inf", math.NaN(), math.Inf(1)},
		{"String differs", memoUpper("ab"), memoUpper("abc")},
		{"slice order", []int{1, 2}, []int{2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ka, kb := memoKey(t, tt.a), memoKey(t, tt.b); ka == kb {
				t.Errorf("MemoKey(%#v) = MemoKey(%#v) = %q; want different keys", tt.a, tt.b, ka)
			}
		})
	}
}

// TestMemoKeyDeterministic builds the same maps many times, inserting in
// random orders, and wants one key: not Go's map iteration order.
func TestMemoKeyDeterministic(t *testing.T) {
	limit := 20
	build := func(order []int) memoQuery {
		q := memoQuery{Term: "shoes", Filters: map[string][]string{}, Limit: &limit}
		for _, i := range order {
			q.Filters[fmt.Sprint("f", i)] = []string{strconv.Itoa(i), "x"}
		}
		return q
	}
	const size, runs = 200, 100
	ordered := make([]int, size)
	for i := range ordered {
		ordered[i] = i
	}
	want := memoKey(t, build(ordered))
	for range runs {
		if got := memoKey(t, build(rand.Perm(size))); got != want {
			t.Fatalf("MemoKey(same query, another insertion order) = %.80q…, want %.80q…", got, want)
		}
	}
	// Nested maps with non-string keys, and a map key that is a struct.
	nested := func() map[fieldsXY]map[int]bool {
		m := map[fieldsXY]map[int]bool{}
		for _, i := range rand.Perm(50) {
			inner := map[int]bool{}
			for _, j := range rand.Perm(20) {
				inner[j] = j%2 == 0
			}
			m[fieldsXY{X: i, Y: "y"}] = inner
		}
		return m
	}
	want = memoKey(t, nested())
	for range runs {
		if got := memoKey(t, nested()); got != want {
			t.Fatalf("MemoKey(nested maps) changed between builds")
		}
	}
}

// TestMemoKeyGolden pins the encoding: keys are shared by processes and
// survive deploys, so a change here strands every memoized entry.
func TestMemoKeyGolden(t *testing.T) {
	limit := 20
	q := memoQuery{
		Term:    "shoes",
		Filters: map[string][]string{"size": {"42", "43"}, "colour": {"red"}},
		Since:   time.Date(2024, 5, 6, 7, 8, 9, 500, time.FixedZone("CEST", 7200)),
		Limit:   &limit,
		Options: []fieldsXY{{X: 1, Y: "a"}},
	}
	want := `{Filters:{"colour":["red"],"size":["42","43"]},Limit:i20,Options:[{X:i1,Y:"a"}],Since:t"2024-05-06T05:08:09.0000005Z",Term:"shoes"}`
	if got := memoKey(t, q); got != want {
		t.Errorf("MemoKey(query) = %s\nwant %s", got, want)
	}
}

func TestMemoKeyUnsupported(t *testing.T) {
	cycle := &memoNode{}
	cycle.Next = &memoNode{Next: cycle}
	selfMap := map[string]any{}
	selfMap["self"] = selfMap
	selfSlice := []any{nil}
	selfSlice[0] = selfSlice
	long := &memoNode{}
	for range 2000 {
		long = &memoNode{Next: long}
	}
	x := 1
	tests := []struct {
		name string
		arg  any
	}{
		{"func", func() {}},
		{"chan", make(chan int)},
		{"unsafe pointer", unsafe.Pointer(&x)},
		{"func in a field", struct{ F func() }{}},
		{"chan in a map", map[string]any{"c": make(chan int)}},
		{"pointer cycle", cycle},
		{"map cycle", selfMap},
		{"slice cycle", selfSlice},
		{"unexported field", memoSecret{Public: "a", secret: "b"}},
		{"nested too deeply", long},
		{"MarshalText error", memoBadText{}},
		{"String panics", memoPanicky{}},
		{"method promoted from an embedded field", struct {
			time.Time
			ID int
		}{time.Unix(0, 0), 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := cachemgr.MemoKey(tt.arg)
			if !errors.Is(err, cachemgr.ErrInvalidOption) {
				t.Errorf("MemoKey(%s) = %q, %v; want ErrInvalidOption", tt.name, k, err)
			}
		})
	}
}

// countedMemo returns fn memoized in a fresh cache, and its call count.
// fn answers with the argument's type and value.
func countedMemo(t *testing.T, m *cachemgr.Manager, name string) (func(context.Context, any) (string, error), *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	c := newCache[string](t, m, name)
	fn := cachemgr.Memoize(c, func(_ context.Context, a any) (string, error) {
		calls.Add(1)
		return fmt.Sprintf("%T %v", a, a), nil
	})
	return fn, &calls
}

func TestMemoizeCallsOncePerKey(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m, _ := newManager(t, s)
		tests := []struct {
			name  string
			args  []any
			calls int32
		}{
			{"same argument", []any{fieldsXY{1, "a"}, fieldsXY{1, "a"}, fieldsXY{1, "a"}}, 1},
			{"fields reordered", []any{fieldsXY{1, "a"}, fieldsYX{"a", 1}}, 1},
			{"map order", []any{map[string]int{"a": 1, "b": 2, "c": 3}, mapInOrder([]string{"c", "b", "a"})}, 1},
			{"int 1 and string 1", []any{1, "1", 1, "1"}, 2},
			{"distinct structs", []any{fieldsXY{1, "a"}, fieldsXY{2, "a"}, fieldsXY{1, "b"}}, 3},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				memo, calls := countedMemo(t, m, fmt.Sprint("memo", i))
				results := map[string]bool{}
				for _, a := range tt.args {
					r, err := memo(context.Background(), a)
					if err != nil {
						t.Fatalf("memo(%#v) error = %v", a, err)
					}
					results[r] = true
				}
				if got := calls.Load(); got != tt.calls || len(results) != int(tt.calls) {
					t.Errorf("memo(%v) made %d calls and %d distinct results, want %d", tt.args, got, len(results), tt.calls)
				}
			})
		}
	})
}

func TestMemoizeErrors(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m, _ := newManager(t, s)
		boom := errors.New("boom")
		tests := []struct {
			name  string
			err   error // what the function returns
			want  error // what every call returns
			calls int32
		}{
			{"error not cached", boom, boom, 3},
			{"ErrNotFound cached", fmt.Errorf("user 7: %w", cachemgr.ErrNotFound), cachemgr.ErrNotFound, 1},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var calls atomic.Int32
				memo := cachemgr.Memoize(newCache[User](t, m, fmt.Sprint("err", i)), func(context.Context, int) (User, error) {
					calls.Add(1)
					return User{}, tt.err
				})
				for range 3 {
					if _, err := memo(context.Background(), 7); !errors.Is(err, tt.want) {
						t.Fatalf("memo(7) error = %v, want %v", err, tt.want)
					}
				}
				if got := calls.Load(); got != tt.calls {
					t.Errorf("3 × memo(7) made %d calls, want %d", got, tt.calls)
				}
			})
		}
	})
}

func TestMemoizeConcurrent(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m, _ := newManager(t, s, cachemgr.WithOpTimeout(time.Second))
		var calls atomic.Int32
		release := make(chan struct{})
		memo := cachemgr.Memoize(newCache[User](t, m, "user"), func(_ context.Context, id int) (User, error) {
			calls.Add(1)
			<-release
			return User{ID: id}, nil
		})
		const n = 200
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				u, err := memo(context.Background(), 42)
				if err == nil && u.ID != 42 {
					err = fmt.Errorf("got user %d", u.ID)
				}
				errs <- err
			})
		}
		waitFor(t, "the memoized function to start", func() bool { return calls.Load() > 0 })
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("memo(42) error = %v", err)
			}
		}
		if got := calls.Load(); got != 1 {
			t.Errorf("%d concurrent memo(42) made %d calls, want 1", n, got)
		}
	})
}

func TestMemoizeUnsupportedArgument(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	memo, calls := countedMemo(t, m, "bad")
	cycle := &memoNode{}
	cycle.Next = cycle
	tests := []struct {
		name string
		arg  any
	}{
		{"func", func() {}},
		{"chan", make(chan struct{})},
		{"cycle", cycle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := memo(context.Background(), tt.arg); !errors.Is(err, cachemgr.ErrInvalidOption) {
				t.Errorf("memo(%s) error = %v, want ErrInvalidOption", tt.name, err)
			}
		})
	}
	if got := calls.Load(); got != 0 {
		t.Errorf("memoized function called %d times for unsupported arguments, want 0", got)
	}
}

func TestMemoizeBadSetup(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[int](t, m, "setup")
	fn := func(_ context.Context, a int) (int, error) { return a, nil }
	tests := []struct {
		name string
		memo func(context.Context, int) (int, error)
		want error
	}{
		{"nil cache", cachemgr.Memoize[int, int](nil, fn), cachemgr.ErrInvalidOption},
		{"nil function", cachemgr.Memoize[int, int](c, nil), cachemgr.ErrNilLoader},
		{"nil key function", cachemgr.MemoizeKey(c, nil, fn), cachemgr.ErrInvalidOption},
		{"bad TTL option", cachemgr.Memoize(c, fn, cachemgr.TTL(-time.Second)), cachemgr.ErrInvalidTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.memo(context.Background(), 1); !errors.Is(err, tt.want) {
				t.Errorf("memo(1) error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMemoizeKey(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	var calls atomic.Int32
	memo := cachemgr.MemoizeKey(newCache[string](t, m, "byid"),
		func(u User) string { return strconv.Itoa(u.ID) },
		func(_ context.Context, u User) (string, error) {
			calls.Add(1)
			return u.Name, nil
		})
	ctx := context.Background()
	first, _ := memo(ctx, User{ID: 1, Name: "Ada"})
	second, err := memo(ctx, User{ID: 1, Name: "ignored by the key"})
	if err != nil || second != first || calls.Load() != 1 {
		t.Errorf("memo(same ID, other name) = %q, %v after %d calls; want %q from 1 call", second, err, calls.Load(), first)
	}
}

// TestMemoizeInvalidation: per-call options reach every Fetch, and
// MemoKey finds the entry to delete.
func TestMemoizeInvalidation(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[string](t, m, "inv")
	var calls atomic.Int32
	memo := cachemgr.Memoize(c, func(_ context.Context, id int) (string, error) {
		calls.Add(1)
		return fmt.Sprint("user ", id), nil
	}, cachemgr.Tags("users"))
	ctx := context.Background()
	steps := []struct {
		name       string
		invalidate func() error
		calls      int32
	}{
		{"first call", func() error { return nil }, 1},
		{"cached", func() error { return nil }, 1},
		{"after InvalidateTags", func() error { return m.InvalidateTags(ctx, "users") }, 2},
		{"after Delete(MemoKey)", func() error {
			k, err := cachemgr.MemoKey(7)
			if err != nil {
				return err
			}
			return c.Delete(ctx, k)
		}, 3},
	}
	for _, st := range steps {
		if err := st.invalidate(); err != nil {
			t.Fatalf("%s: error = %v", st.name, err)
		}
		if v, err := memo(ctx, 7); err != nil || v != "user 7" || calls.Load() != st.calls {
			t.Errorf("%s: memo(7) = %q, %v after %d calls, want %q after %d", st.name, v, err, calls.Load(), "user 7", st.calls)
		}
	}
}

// memoEmbedsTime may take its MarshalText from the embedded time.Time.
type memoEmbedsTime struct {
	time.Time
	ID int
}

// memoBuild memoizes a function of sample's type in c with NewMemoized and
// returns its error, and MemoKey's error for sample.
func memoBuild[A any](c *cachemgr.Cache[string], sample A) (build, key error) {
	_, build = cachemgr.NewMemoized(c, func(context.Context, A) (string, error) { return "", nil })
	_, key = cachemgr.MemoKey(sample)
	return build, key
}

// TestNewMemoizedRefusesUnkeyableTypes: NewMemoized refuses, when it
// builds the function, an argument type MemoKey cannot key, and accepts
// one it can. Each case has a non-nil, non-empty sample of the type:
// MemoKey must fail on it exactly when NewMemoized refuses the type, so
// no keyable type is refused and no refused type could have been keyed.
func TestNewMemoizedRefusesUnkeyableTypes(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[string](t, m, "types")
	x := 1
	tests := []struct {
		name  string
		build func() (build, key error)
		where string // the path the error names, for refused types
	}{
		{"func", func() (error, error) { return memoBuild(c, func() {}) }, ""},
		{"chan", func() (error, error) { return memoBuild(c, make(chan int)) }, ""},
		{"unsafe pointer", func() (error, error) { return memoBuild(c, unsafe.Pointer(&x)) }, ""},
		{"unexported field", func() (error, error) { return memoBuild(c, memoSecret{Public: "a", secret: "b"}) }, ""},
		{"pointer to it", func() (error, error) { return memoBuild(c, &memoSecret{}) }, ""},
		{"slice of it", func() (error, error) { return memoBuild(c, []memoSecret{{}}) }, "[]"},
		{"array of it", func() (error, error) { return memoBuild(c, [1]memoSecret{}) }, "[]"},
		{"map key", func() (error, error) { return memoBuild(c, map[memoSecret]int{{}: 1}) }, "[key]"},
		{"map value", func() (error, error) { return memoBuild(c, map[string]chan int{"c": nil}) }, "[value]"},
		{"func field", func() (error, error) { return memoBuild(c, struct{ F func() }{}) }, ".F"},
		{"nested field", func() (error, error) {
			return memoBuild(c, struct{ Q struct{ S []*memoSecret } }{struct{ S []*memoSecret }{[]*memoSecret{{}}}})
		}, ".Q.S[]"},
		{"promoted method", func() (error, error) { return memoBuild(c, memoEmbedsTime{ID: 7}) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			build, key := tt.build()
			if !errors.Is(build, cachemgr.ErrInvalidOption) || key == nil {
				t.Fatalf("NewMemoized error = %v, MemoKey error = %v; want ErrInvalidOption from both", build, key)
			}
			if want := " at " + tt.where + ":"; tt.where != "" && !strings.Contains(build.Error(), want) {
				t.Errorf("NewMemoized error %q does not name %q", build, tt.where)
			}
		})
	}
	ok := []struct {
		name  string
		build func() (build, key error)
	}{
		{"int", func() (error, error) { return memoBuild(c, 1) }},
		{"struct", func() (error, error) { return memoBuild(c, fieldsXY{1, "a"}) }},
		{"blank and empty fields, time, map, pointer", func() (error, error) { return memoBuild(c, memoQuery{Term: "x", Limit: &x}) }},
		{"recursive type", func() (error, error) { return memoBuild(c, &memoNode{Next: &memoNode{}}) }},
		{"unexported fields behind MarshalText", func() (error, error) { return memoBuild(c, netip.MustParseAddr("10.0.0.1")) }},
		{"String with a pointer receiver", func() (error, error) { return memoBuild(c, *big.NewInt(5)) }},
		{"interface (checked at each call)", func() (error, error) { return memoBuild[any](c, 1) }},
		{"empty array of funcs", func() (error, error) { return memoBuild(c, [0]func(){}) }},
		{"byte slice", func() (error, error) { return memoBuild(c, []byte("ab")) }},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			if build, key := tt.build(); build != nil || key != nil {
				t.Errorf("NewMemoized error = %v, MemoKey error = %v; want neither", build, key)
			}
		})
	}
}

// TestMemoizeRefusedType: Memoize, which has no error to return, answers
// every call with the error NewMemoized gives, before calling fn, even for
// a nil value that MemoKey alone could key.
func TestMemoizeRefusedType(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[string](t, m, "refused")
	var calls atomic.Int32
	fn := func(context.Context, *memoSecret) (string, error) { calls.Add(1); return "", nil }
	_, want := cachemgr.NewMemoized(c, fn)
	memo := cachemgr.Memoize(c, fn)
	for _, arg := range []*memoSecret{nil, {Public: "a"}} {
		if _, err := memo(context.Background(), arg); !errors.Is(err, cachemgr.ErrInvalidOption) || want == nil || err.Error() != want.Error() {
			t.Errorf("memo(%v) error = %v, want %v", arg, err, want)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("fn called %d times, want 0", n)
	}
}

// TestNewMemoizedBadSetup: what Memoize reports at each call, NewMemoized
// reports when it builds the function.
func TestNewMemoizedBadSetup(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[int](t, m, "setup")
	fn := func(_ context.Context, a int) (int, error) { return a, nil }
	tests := []struct {
		name string
		c    *cachemgr.Cache[int]
		fn   func(context.Context, int) (int, error)
		opts []cachemgr.WriteOption
		want error
	}{
		{"nil cache", nil, fn, nil, cachemgr.ErrInvalidOption},
		{"nil function", c, nil, nil, cachemgr.ErrNilLoader},
		{"bad TTL option", c, fn, []cachemgr.WriteOption{cachemgr.TTL(-time.Second)}, cachemgr.ErrInvalidTTL},
		{"empty tag", c, fn, []cachemgr.WriteOption{cachemgr.Tags("")}, cachemgr.ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			memo, err := cachemgr.NewMemoized(tt.c, tt.fn, tt.opts...)
			if memo != nil || !errors.Is(err, tt.want) {
				t.Errorf("NewMemoized() = %p, %v; want nil, %v", memo, err, tt.want)
			}
		})
	}
	memo, err := cachemgr.NewMemoized(c, fn, cachemgr.TTL(time.Minute))
	if err != nil {
		t.Fatalf("NewMemoized() error = %v", err)
	}
	if v, err := memo(context.Background(), 3); v != 3 || err != nil {
		t.Errorf("memo(3) = %d, %v; want 3, nil", v, err)
	}
}
