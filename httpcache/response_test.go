package httpcache_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/httpcache"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// rawDo sends one request over a new connection to addr and returns the
// raw header, without its Date, Age and X-Cache lines, the raw body, and
// the X-Cache value, followed by " aged" when there was an Age line.
func rawDo(t *testing.T, addr, method, path string) (head string, body []byte, state string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", method, path)
	all, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	rawHead, body, ok := bytes.Cut(all, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("%s %s: no end of header in %q", method, path, all)
	}
	var lines []string
	for line := range strings.SplitSeq(string(rawHead), "\r\n") {
		switch {
		case strings.HasPrefix(line, "Date: "):
		case strings.HasPrefix(line, "Age: "):
			defer func() { state += " aged" }()
		case strings.HasPrefix(line, httpcache.StatusHeader+": "):
			state = strings.TrimPrefix(line, httpcache.StatusHeader+": ")
		default:
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\r\n"), body, state
}

// sortedLines returns the lines of head in sorted order.
func sortedLines(head string) string {
	lines := strings.Split(head, "\r\n")
	slices.Sort(lines)
	return strings.Join(lines, "\r\n")
}

// TestReplayByteForByte compares what a client receives, byte for byte
// (but for Date, Age and X-Cache), from the handler alone and from the
// handler behind the middleware: on a miss, on a hit, and for HEAD. A hit
// has an Age, and the middleware sets Content-Length in the header where
// net/http appends it after the handler's, so lines may come in another
// order.
func TestReplayByteForByte(t *testing.T) {
	binary := make([]byte, 1024)
	for i := range binary {
		binary[i] = byte(i)
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"several values of one header", func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Add("X-Multi", "a")
			h.Add("X-Multi", "b, c")
			h.Add("X-Multi", "")
			h.Add("Cache-Control", "public")
			h.Add("Cache-Control", "max-age=60")
			h.Add("Link", "</a.css>; rel=preload")
			h.Add("Link", "</b.js>; rel=preload")
			io.WriteString(w, "hello\r\nworld")
		}},
		{"binary body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(binary)
		}},
		{"binary body, type sniffed", func(w http.ResponseWriter, r *http.Request) {
			w.Write(binary)
		}},
		{"html, type sniffed, written in pieces", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<!DOCTYPE html>")
			io.WriteString(w, "<html><body>hi</body></html>")
		}},
		{"key not in canonical form", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["x-lower-case"] = []string{"kept as written"}
			io.WriteString(w, "ok")
		}},
		{"content length from handler", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "12345")
		}},
		{"empty body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
		}},
		{"gzip content encoding", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		}},
	}
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m := newManager(t, s)
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Add("Cache-Control", "max-age=60")
					tt.handler(w, r)
				})
				direct := httptest.NewServer(handler)
				defer direct.Close()
				cached := httptest.NewServer(newCache(t, m, fmt.Sprintf("r%d", i)).Middleware(handler))
				defer cached.Close()
				d, c := direct.Listener.Addr().String(), cached.Listener.Addr().String()
				getHead, getBody, _ := rawDo(t, d, "GET", "/p")
				headHead, headBody, _ := rawDo(t, d, "HEAD", "/p")

				steps := []struct {
					method, path, state string
					normalize           func(string) string
					head                string
					body                []byte
				}{
					{"GET", "/get-first", httpcache.Miss, sortedLines, getHead, getBody},
					{"GET", "/get-first", httpcache.Hit + " aged", sortedLines, getHead, getBody},
					{"HEAD", "/get-first", httpcache.Hit + " aged", sortedLines, headHead, headBody},
					{"HEAD", "/head-first", httpcache.Miss, sortedLines, headHead, headBody},
					{"GET", "/head-first", httpcache.Hit + " aged", sortedLines, getHead, getBody},
				}
				for _, st := range steps {
					head, body, state := rawDo(t, c, st.method, st.path)
					if state != st.state || st.normalize(head) != st.normalize(st.head) || !bytes.Equal(body, st.body) {
						t.Errorf("%s %s = %s\n%s\n(%d bytes of body)\nwant %s\n%s\n(%d bytes of body, equal: %v)",
							st.method, st.path, state, head, len(body), st.state, st.head, len(st.body), bytes.Equal(body, st.body))
					}
				}
			})
		}
	})
}
