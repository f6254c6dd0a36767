package coherence

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Kinds of [Record].
const (
	// KindRead is one key of one read: Version is what it saw, or -1 for
	// a miss or an error.
	KindRead = "read"
	// KindUpdate is a row's version bumped in the database, between Start
	// and End.
	KindUpdate = "update"
	// KindInvalidate is one invalidation call, covering Keys of Strategy's
	// cache, from Start until it returned at End.
	KindInvalidate = "invalidate"
	// KindEvent is Proc receiving, at Start, the notice a writer published
	// after invalidation ID returned.
	KindEvent = "event"
	// KindStall is Proc's event subscription stalled from Start to End.
	KindStall = "stall"
	// KindFault is a fault the parent injected (Op names it), from Start
	// to End.
	KindFault = "fault"
	// KindStats is Proc's Manager statistics at the end of its run.
	KindStats = "stats"
)

// Tiers a read was answered from, in [Record].Tier.
const (
	TierL1    = "l1"    // the process's L1 tier (for a batch: at least one key was)
	TierRedis = "redis" // a value read from Redis
	TierLoad  = "load"  // this read's own loader
	TierJoin  = "join"  // another caller's load in the same process
)

// Record is one entry of a process's history. Times are nanoseconds of the
// shared [Clock]. Fields a Kind does not use are empty.
type Record struct {
	Kind     string   `json:"k"`
	Proc     string   `json:"p"`
	L1       bool     `json:"l1,omitempty"` // the process has an L1 tier
	Strategy string   `json:"s,omitempty"`  // the cache, named for its strategy
	Key      string   `json:"key,omitempty"`
	Keys     []string `json:"keys,omitempty"`
	Op       string   `json:"op,omitempty"`
	Tier     string   `json:"tier,omitempty"`
	Start    int64    `json:"t0,omitempty"`
	End      int64    `json:"t1,omitempty"`
	Version  int64    `json:"v,omitempty"`
	// Got is the key a read's value claimed to be, when not Key.
	Got string `json:"got,omitempty"`
	ID  int64  `json:"id,omitempty"`
	Err string `json:"err,omitempty"`
	// Sent is how many invalidation events the call publishes when it
	// returns nil (InvalidatePrefix publishes none).
	Sent  int               `json:"sent,omitempty"`
	Stats map[string]uint64 `json:"stats,omitempty"`
}

// Log appends Records to a file, one JSON object a line. It is safe for
// concurrent use; Close flushes it.
type Log struct {
	mu  sync.Mutex
	f   *os.File
	w   *bufio.Writer
	enc *json.Encoder
	err error
}

// CreateLog creates (or truncates) the file at path.
func CreateLog(path string) (*Log, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 64<<10)
	return &Log{f: f, w: w, enc: json.NewEncoder(w)}, nil
}

// Add appends r. The first write error is kept and returned by Close.
func (l *Log) Add(r Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = l.enc.Encode(r)
	}
}

// Close flushes and closes the file, returning the first error met.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.err
	if ferr := l.w.Flush(); err == nil {
		err = ferr
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadLogs reads and merges the histories in paths.
func ReadLogs(paths ...string) ([]Record, error) {
	var out []Record
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		out, err = decodeRecords(f, out)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return out, nil
}

func decodeRecords(r io.Reader, out []Record) ([]Record, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	for {
		var rec Record
		err := dec.Decode(&rec)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}
