package session_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/cachemgr/cachemgr/session"
)

// TestCluster runs every operation on a three-master Redis Cluster, on
// sessions spread over the slots: a session is one key, and Renew's two
// keys share a hash tag. The lifetime is near enough for every call to cap
// the TTL too.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	e := onClient(t, cl.Client(t), session.WithLifetime(time.Hour))
	ctx := context.Background()
	const n = 24
	nodes := map[string]bool{}
	for i := range n {
		id := e.create(t, map[string]any{"i": i, "drop": "x"})
		addr, err := nodeOf(ctx, e, key(id))
		if err != nil {
			t.Fatal(err)
		}
		nodes[addr] = true

		s := e.st.Open(id)
		if err := s.Load(ctx, "i", "drop"); err != nil {
			t.Fatalf("Load error = %v", err)
		}
		if got, err := session.Get[int](ctx, s, "i"); got != i || err != nil {
			t.Errorf("Get(i) = %d, %v, want %d, nil", got, err, i)
		}
		s.Set("j", i*2)
		s.Delete("drop")
		if err := s.Save(ctx); err != nil {
			t.Fatalf("Save error = %v", err)
		}
		if err := s.Renew(ctx); err != nil {
			t.Fatalf("Renew error = %v", err)
		}
		fresh := e.st.Open(s.ID())
		if got, err := session.Get[int](ctx, fresh, "j"); got != i*2 || err != nil {
			t.Errorf("Get(j) after Renew = %d, %v, want %d, nil", got, err, i*2)
		}
		if _, err := session.Get[string](ctx, fresh, "drop"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(drop) after Delete error = %v, want ErrNoField", err)
		}
		if _, err := e.getString(t, id, "i"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(i) with the ID before Renew error = %v, want ErrNoField", err)
		}
		if err := fresh.Destroy(ctx); err != nil {
			t.Fatalf("Destroy error = %v", err)
		}
		if _, err := e.getString(t, s.ID(), "j"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(j) after Destroy error = %v, want ErrNoField", err)
		}
	}
	// A write to an unknown ID moves to a new session and leaves nothing.
	unknown := e.st.Open("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGKJ5Tw")
	unknown.Set("a", "1")
	if err := unknown.Save(ctx); err != nil {
		t.Fatalf("Save to an unknown ID error = %v", err)
	}
	if n, err := e.rdb.Exists(ctx, key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGKJ5Tw")).Result(); n != 0 || err != nil {
		t.Errorf("EXISTS of the unknown ID's key = %d, %v, want 0", n, err)
	}
	if got, err := e.getString(t, unknown.ID(), "a"); got != "1" || err != nil {
		t.Errorf("Get(a) of the new session = %q, %v, want 1, nil", got, err)
	}
	if len(nodes) < 2 {
		t.Errorf("%d sessions landed on %d node(s), want them spread", n, len(nodes))
	}
	// The middleware, on Cluster too.
	res := e.serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		e.st.From(r.Context()).Set("a", "1")
	})
	c := sessionCookie(res)
	if c == nil {
		t.Fatal("no session cookie")
	}
	if got, err := e.getString(t, c.Value, "a"); got != "1" || err != nil {
		t.Errorf("Get(a) = %q, %v, want 1, nil", got, err)
	}
}

// nodeOf returns the address of the master serving key.
func nodeOf(ctx context.Context, e *env, key string) (string, error) {
	slot, err := e.rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", err
	}
	slots, err := e.rdb.ClusterSlots(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			return s.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("no node serves slot %d", slot)
}
