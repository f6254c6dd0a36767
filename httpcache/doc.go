// Package httpcache caches HTTP responses in a cachemgr cache, as
// net/http middleware.
//
//	pages, err := httpcache.New(m, "page",
//		httpcache.WithTTL(time.Minute),
//		httpcache.WithVary(func(r *http.Request) string { return userID(r) }),
//	)
//	mux.Handle("GET /products/", pages.Middleware(productsHandler))
//
// # What is cached
//
// Only GET and HEAD requests are looked up; every other method goes straight
// to the handler and gets no X-Cache header. A response is stored when all of
// these hold:
//
//   - the condition accepts it ([WithCondition]; by default status 200
//     without a Vary header);
//   - its Cache-Control has none of no-store, private or no-cache;
//   - it sets no cookie (Set-Cookie), declares no trailers, and is not a
//     206 or 304, which answer one request's Range or validators;
//   - its body is at most the size limit ([WithMaxBodySize]).
//
// Every response, stored or not, is still sent in full. The served response
// carries X-Cache: HIT when it came from Redis and MISS when the handler
// produced it for this request or for a concurrent one.
//
// # Keys, and the danger of sharing
//
// The key is "GET", the escaped path, the query with its parameters sorted
// by name, the Host, and the value of the vary function. HEAD uses the GET
// key. Two requests with the same key get the same response, whoever asks:
// without [WithVary], a page the handler renders for user A is served to
// user B. The vary function must return everything the response depends on
// beyond the URL and host — the user or tenant ID, the Accept-Language or
// Accept-Encoding a handler negotiates on. A response Vary header is not
// understood: the default condition refuses to store such responses, and a
// condition that accepts them must come with a vary function that covers
// the headers they name. Responses that mark themselves personal
// (private, no-store, Set-Cookie) are never stored.
//
// # Loads
//
// A miss runs the handler through [cachemgr.Cache.Fetch], so concurrent
// misses of one key run it once and share a response that is stored. The
// handler writes to a buffer, and the middleware then replays the status,
// headers and body byte for byte; handlers that stream (server-sent events,
// large downloads) should not be wrapped, since their whole output is held
// in memory. A response that is not stored is sent only to the request that
// ran the handler; the others run the handler themselves. The Manager's
// Stats count such loads, and handler panics, as LoadErrors.
//
// The handler does not run on the request's goroutine. It gets a copy of
// the first request (as GET, for a HEAD) whose context keeps that request's
// values but is not cancelled when its client leaves; it ends after the
// Manager's load timeout ([cachemgr.WithLoadTimeout]) or when the Manager
// closes. Since the other requests of a shared load get that first request's
// response, anything the handler reads from the request must be in the key.
// Inside the handler, [cachemgr.EntryFrom](r.Context()) sets the entry's TTL
// or adds tags known only once the page is rendered.
//
// A request with Cache-Control: no-cache skips the lookup: the entry is
// deleted and the handler's response is served and stored for the next
// requests. That lets any client make the handler run, as a new query
// parameter would too. A request with Cache-Control: no-store is served by
// the handler and neither reads nor writes the cache.
//
// # Invalidation
//
// [Cache.InvalidatePath] deletes the entries of a path prefix.
// [WithTags] tags entries, and [cachemgr.Manager.InvalidateTags] then
// invalidates them, typically from the handler of a write:
//
//	mux.HandleFunc("POST /products/{id}", func(w http.ResponseWriter, r *http.Request) {
//		// ... update the product ...
//		m.InvalidateTags(r.Context(), "product:"+r.PathValue("id"))
//	})
//
// # When Redis is down
//
// The middleware fails open: when Redis fails, times out or the circuit
// breaker is open, requests are answered by the handler (X-Cache: MISS),
// after at most about twice the Manager's op timeout, and concurrent
// requests of one key still share one handler run.
package httpcache
