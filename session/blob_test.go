package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/cachemgr/cachemgr/session"
	"github.com/redis/go-redis/v9"
)

// blobStore keeps a session as one encoded value, the way gorilla/sessions'
// Redis stores and alexedwards/scs do: a request loads the whole session,
// changes it in memory, and saves the whole of it again.
type blobStore struct{ rdb redis.UniversalClient }

func (b blobStore) load(ctx context.Context, id string) (map[string]string, error) {
	data, err := b.rdb.Get(ctx, "blob:"+id).Bytes()
	if errors.Is(err, redis.Nil) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	values := map[string]string{}
	return values, json.Unmarshal(data, &values)
}

func (b blobStore) save(ctx context.Context, id string, values map[string]string) error {
	data, err := json.Marshal(values)
	if err != nil {
		return err
	}
	return b.rdb.Set(ctx, "blob:"+id, data, 30*time.Minute).Err()
}

// bothAtOnce runs change("a") and change("b") at once; each calls loaded
// when it has read the session, and carries on only once both have.
func bothAtOnce(change func(field string, loaded func())) {
	var both, wg sync.WaitGroup
	both.Add(2)
	loaded := func() {
		both.Done()
		both.Wait()
	}
	for _, f := range []string{"a", "b"} {
		wg.Go(func() { change(f, loaded) })
	}
	wg.Wait()
}

// TestBlobStoreLosesAChange: two requests of one user that change
// different values at once, each having read the session before the other
// saves. A store of one blob per session keeps only the last save's copy,
// losing the other change; session keeps both.
func TestBlobStoreLosesAChange(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()

		blobs := blobStore{e.rdb}
		if err := blobs.save(ctx, "u1", map[string]string{"user": "ada"}); err != nil {
			t.Fatal(err)
		}
		bothAtOnce(func(field string, loaded func()) {
			values, err := blobs.load(ctx, "u1")
			loaded()
			if err != nil {
				t.Error(err)
				return
			}
			values[field] = "changed"
			if err := blobs.save(ctx, "u1", values); err != nil {
				t.Error(err)
			}
		})
		got, err := blobs.load(ctx, "u1")
		if err != nil {
			t.Fatal(err)
		}
		if _, a := got["a"]; a == (got["b"] != "") || got["user"] != "ada" {
			t.Errorf("blob store after two concurrent changes = %q, want user and exactly one of a, b", got)
		}

		id := e.create(t, map[string]any{"user": "ada"})
		bothAtOnce(func(field string, loaded func()) {
			s := e.st.Open(id)
			_, err := session.Get[string](ctx, s, "user")
			loaded()
			if err != nil {
				t.Error(err)
				return
			}
			s.Set(field, "changed")
			if err := s.Save(ctx); err != nil {
				t.Error(err)
			}
		})
		if got := e.raw(t, id); len(got) != 3 || got["a"] == "" || got["b"] == "" {
			t.Errorf("session after two concurrent changes = %q, want user, a and b", got)
		}
	})
}
