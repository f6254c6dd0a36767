// Package httpcache is net/http middleware that caches responses in a
// cachemgr cache, shared by every process on the same Redis. It follows
// RFC 9111 as a shared cache: responses say how long they may be reused,
// stale responses are revalidated with the handler, and conditional
// requests are answered from the cache.
//
//	pages, err := httpcache.New(m, "page",
//		httpcache.WithTTL(10*time.Minute),
//		httpcache.WithQueryKeys("id", "page"),
//	)
//	mux.Handle("GET /products/", pages.Middleware(productsHandler))
//
// The handler decides what is cached, with the headers an HTTP cache
// reads: Cache-Control: max-age=60 on a response makes it reusable for a
// minute. docs/httpcache.md in the repository has the rules in full and
// the results of the public HTTP cache test suite.
//
// # What is stored, and for how long
//
// GET and HEAD requests are looked up (HEAD uses the GET entry). A
// response is stored when it says it may be reused, and is fresh for:
//
//   - CDN-Cache-Control's max-age, when that field is present and valid
//     (it then replaces Cache-Control for this cache);
//   - else s-maxage, else max-age, else Expires minus Date;
//   - else, for Cache-Control: public, the TTL ([WithTTL]);
//   - else, when it has a Last-Modified and a status that allows it, a
//     tenth of the time since that date (heuristic freshness);
//   - and never longer than the TTL from now.
//
// The lifetime runs from when the response was made, so an Age from an
// upstream cache, or a Date in the past, shortens it. A response with no
// freshness information and no validator (ETag, Last-Modified) is not
// stored: such a handler is served as if there were no cache. A response
// with a validator is stored even when it is stale at once (max-age=0,
// no-cache), to be revalidated.
//
// Never stored: responses with no-store (unless must-understand with a
// known status), private, Vary: *, Set-Cookie, trailers, a 206 or 304
// status, a body over [WithMaxBodySize], or that the [WithCondition]
// function refuses; and responses to requests with Authorization, unless
// the response has public, s-maxage or must-revalidate. Hop-by-hop fields
// (Connection and those it names, Keep-Alive, Transfer-Encoding...) are
// not stored. A request with Cache-Control: no-store is passed to the
// handler and neither reads nor writes the cache.
//
// # How stored responses are served
//
// The X-Cache header ([StatusHeader]) says what happened:
//
//   - HIT: a fresh stored response, with its current Age and a
//     Content-Length. A request whose If-None-Match or If-Modified-Since
//     matches it gets a 304.
//   - REVALIDATED: the stored response was stale (or the client asked
//     for revalidation with no-cache or max-age); the cache sent the
//     handler a conditional request with the stored ETag and Last-Modified,
//     the handler answered 304, and the stored response, with the 304's
//     header fields, was stored again and sent.
//   - STALE: a stale response sent within its stale-while-revalidate
//     window (the revalidation runs after it is sent, before the
//     middleware returns, so nothing outlives the request), within its
//     stale-if-error window when the handler failed (5xx or panic), or to
//     a request with max-stale. Never for must-revalidate,
//     proxy-revalidate, s-maxage or no-cache responses.
//   - MISS: the handler's response, for this request or a concurrent one.
//
// A client's Cache-Control: no-cache (or max-age=0) revalidates, and never
// deletes the stored response; [WithClientRevalidation] turns that off for
// endpoints where clients must not make the handler run. only-if-cached
// gets a 504 when nothing fresh is stored. A 103 Early Hints (or other 1xx)
// from the handler reaches the client of the request it runs for, and is
// never stored.
//
// # Keys, variants and the danger of sharing
//
// The key is "GET", the escaped path, the query with its parameters sorted
// by name ([WithQueryKeys] or [WithoutQueryKeys] choose which count), the
// Host, and the value of the [WithVary] function. A response's Vary header
// is understood: the responses of one key are stored together, one per
// combination of the request headers Vary names (compared after joining
// field lines and collapsing spaces), so that a lookup is still one Redis
// read. Two requests with the same key and variant get the same response,
// whoever asks: a page the handler renders for user A without saying so
// in Vary, private or no-store is served to user B. [WithVary] adds what
// the response depends on beyond the URL, host and Vary (the user or tenant
// ID). [WithPrivate] makes the cache private, for caches keyed per user.
//
// # Loads
//
// When nothing is stored for a key, the handler runs through
// [cachemgr.Cache.Fetch], so concurrent misses of one key share one run,
// across processes too. The handler writes to a buffer, and the middleware
// then replays status, header and body; handlers that stream (server-sent
// events, large downloads) should not be wrapped, since their whole output
// is held in memory. A response that is not stored is sent only to the
// request that ran the handler; the others run it themselves.
// Revalidations, and new variants of a stored key, are shared by the
// requests of one process and written with [cachemgr.Cache.Set].
//
// The handler does not run on the request's goroutine on a miss. It gets a
// copy of the request (as GET, for a HEAD, and without the client's
// validators and Range, so that it sends a whole response the cache then
// compares them with) whose context keeps that request's values but is not
// cancelled when its client leaves; it ends after the Manager's load
// timeout ([cachemgr.WithLoadTimeout]) or when the Manager closes.
//
// # Invalidation
//
// A successful (2xx or 3xx) response to an unsafe request (POST, PUT,
// DELETE, PATCH, or any method other than GET, HEAD, OPTIONS, TRACE and
// CONNECT) deletes the stored responses of its URL, and of the URLs on the
// same host in its Location and Content-Location, before the response
// reaches the client. The deleted keys have the vary value of the unsafe
// request. [Cache.InvalidatePath] deletes the entries of a path prefix.
// [WithTags] tags entries, and [cachemgr.Manager.InvalidateTags] then
// invalidates them:
//
//	mux.HandleFunc("POST /categories/{id}", func(w http.ResponseWriter, r *http.Request) {
//		// ... update the category ...
//		m.InvalidateTags(r.Context(), "category:"+r.PathValue("id"))
//	})
//
// Tags a handler adds with [cachemgr.EntryFrom] stay on the entry only
// until it is written again (a revalidation, a new variant); those of
// [WithTags] are set at every write.
//
// # When Redis is down
//
// The middleware fails open: when Redis fails, times out or the circuit
// breaker is open, requests are answered by the handler (X-Cache: MISS),
// after at most about twice the Manager's op timeout, and concurrent
// requests of one key still share one handler run.
package httpcache
