// Package badgerstore is the durable store.Store of a virtual host: one badger database per directory,
// with the key layout of the store package doc, group commit (one badger transaction and one sync per
// batch of concurrent commits), scheduled value-log GC and badger's directory lock, so that a second
// broker on the same directory is refused.
//
// A write that fails (disk full, I/O error) fails every commit of its batch with that error and applies
// none of them; badger keeps serving reads of what was committed before.
package badgerstore

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/internal/engine"
)

// Logger receives badger's warnings and errors; *zap.SugaredLogger satisfies it. Info and debug
// messages are dropped.
type Logger interface {
	Errorf(template string, args ...any)
	Warnf(template string, args ...any)
}

// Options configure a badger store. The zero value is the default (and what conf's defaults map to).
type Options struct {
	// NoSync turns off the sync of each batch (conf `sync = false`): faster, but a machine crash can lose
	// acknowledged commits. A process crash cannot. Default false: every batch is synced before its
	// callers are told it is durable.
	NoSync bool
	// FlushDelay (conf `flush_delay`), when > 0, holds a batch up to this long to gather more commits;
	// an entry put and deleted within the batch (a message consumed before the flush) is never written.
	// Callers wait up to this long for their acknowledgement. Default 0.
	FlushDelay time.Duration
	// GCInterval is how often the value log is garbage collected. Default 5 minutes; < 0 disables.
	GCInterval time.Duration
	// GCDiscardRatio is the share of garbage that makes a value-log file worth rewriting. Default 0.5.
	GCDiscardRatio float64
	// ValueThreshold: values this long or longer live in the value log rather than the LSM tree.
	// Default 1 KiB.
	ValueThreshold int64
	// MemTableSize bounds each of badger's memtables (badger keeps a few; flushing one to a table takes
	// a few times its size). Default 8 MiB.
	MemTableSize int64
	// BlockCacheSize is badger's block cache. Default 16 MiB.
	BlockCacheSize int64
	// Logger receives badger's warnings and errors. nil drops them.
	Logger Logger
	// BeforeWrite, when set, is called with each batch staged in its badger transaction and not yet
	// committed; an error discards the transaction and fails the batch. For fault-injection tests.
	BeforeWrite func() error
}

// Store is a badger-backed store.Store.
type Store struct {
	*engine.Engine
	db     *badger.DB
	usage  diskUsage
	stopGC chan struct{}
	gcDone chan struct{}
	gcMu   sync.Mutex
	once   sync.Once
}

// Open opens (creating if needed) the store in dir. It fails with an error wrapping store.ErrLocked when
// another process, or another Open in this one, holds the directory, and with store.ErrVersion when the
// directory holds a format this build does not read.
func Open(dir string, o Options) (*Store, error) {
	if o.GCInterval == 0 {
		o.GCInterval = 5 * time.Minute
	}
	if o.GCDiscardRatio <= 0 || o.GCDiscardRatio >= 1 {
		o.GCDiscardRatio = 0.5
	}
	if o.ValueThreshold <= 0 {
		o.ValueThreshold = 1 << 10
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = 8 << 20
	}
	if o.BlockCacheSize <= 0 {
		o.BlockCacheSize = 16 << 20
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(logAdapter{o.Logger}).
		WithSyncWrites(!o.NoSync).
		WithDetectConflicts(false). // one committer goroutine writes; reads are snapshots
		WithNumVersionsToKeep(1).
		WithValueThreshold(o.ValueThreshold).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(3).
		WithNumCompactors(2). // each running compaction holds table builders
		WithBlockCacheSize(o.BlockCacheSize).
		WithValueLogFileSize(256 << 20)
	// Tables of one size at every level: a builder holds twice its table's size, and badger pools up to 8
	// of them, so the default (twice the size per level, 64 MiB tables at the sixth) held hundreds of
	// MiB of heap in compactions of a large backlog of small messages.
	bo.TableSizeMultiplier = 1
	db, err := badger.Open(bo)
	if err != nil {
		if strings.Contains(err.Error(), "directory lock") {
			return nil, fmt.Errorf("%w: %s (is another broker running on it?)", store.ErrLocked, dir)
		}
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	e, err := engine.New(kv{db: db, beforeCommit: o.BeforeWrite}, engine.Options{FlushDelay: o.FlushDelay})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	s := &Store{Engine: e, db: db, usage: diskUsage{dir: dir}, stopGC: make(chan struct{}), gcDone: make(chan struct{})}
	go s.gcLoop(o.GCInterval, o.GCDiscardRatio)
	return s, nil
}

// gcLoop rewrites value-log files that are mostly garbage, as many as qualify, on every tick.
func (s *Store) gcLoop(every time.Duration, ratio float64) {
	defer close(s.gcDone)
	if every < 0 {
		<-s.stopGC
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
			s.RunGC(ratio)
		}
	}
}

// RunGC runs value-log GC until no file qualifies (or the store closes) and returns how many files it
// rewrote. The schedule calls it; tests and an admin command may too.
func (s *Store) RunGC(ratio float64) int {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	n := 0
	for {
		select {
		case <-s.stopGC:
			return n
		default:
		}
		if err := s.db.RunValueLogGC(ratio); err != nil {
			return n
		}
		n++
	}
}

// Stats implements store.Store. SizeBytes is measured on the directory (see diskUsage), not taken from
// badger's DB.Size: that is refreshed once a minute only (0 until then in a new store) and counts the
// value log being written at its preallocated length, 512 MiB, however little it holds.
func (s *Store) Stats() store.Stats {
	st := s.Engine.Stats()
	st.SizeBytes = s.usage.get()
	return st
}

// sizeEvery is how long a measured directory size is reused: a monitoring scrape every few seconds
// must not walk a directory of thousands of tables each time.
const sizeEvery = 5 * time.Second

// diskUsage measures the disk space a store's directory takes, as du does: the blocks allocated to each
// file where the platform reports them (the value log and memtable files are sparse), else file sizes.
type diskUsage struct {
	dir   string
	mu    sync.Mutex
	at    time.Time
	bytes int64
}

func (u *diskUsage) get() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.at.IsZero() || time.Since(u.at) >= sizeEvery {
		u.bytes, u.at = dirSize(u.dir), time.Now()
	}
	return u.bytes
}

// dirSize adds up the space of the regular files under dir. A file that vanishes during the walk (a
// table compaction removed) is skipped.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			n += allocated(info)
		}
		return nil
	})
	return n
}

// Close flushes queued commits, stops the GC and closes badger.
func (s *Store) Close() error {
	err := store.ErrClosed
	s.once.Do(func() {
		close(s.stopGC)
		<-s.gcDone
		s.gcMu.Lock() // an explicit RunGC finishes first
		defer s.gcMu.Unlock()
		err = s.Engine.Close()
	})
	return err
}

type kv struct {
	db           *badger.DB
	beforeCommit func() error
}

func (k kv) View(fn func(r engine.Reader) error) error {
	return k.db.View(func(txn *badger.Txn) error { return fn(reader{txn}) })
}

func (k kv) Write(muts []engine.Mutation) error {
	txn := k.db.NewTransaction(true)
	defer txn.Discard()
	for _, m := range muts {
		var err error
		if m.Delete {
			err = txn.Delete(m.Key)
		} else {
			err = txn.Set(m.Key, m.Value)
		}
		if errors.Is(err, badger.ErrTxnTooBig) {
			return fmt.Errorf("%w (%d keys)", store.ErrBatchTooBig, len(muts))
		}
		if err != nil {
			return err
		}
	}
	if k.beforeCommit != nil {
		if err := k.beforeCommit(); err != nil {
			return err
		}
	}
	return txn.Commit()
}

func (k kv) Close() error { return k.db.Close() }

type reader struct{ txn *badger.Txn }

func (r reader) Get(key []byte) ([]byte, bool, error) {
	item, err := r.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := item.ValueCopy(nil)
	return v, err == nil, err
}

func (r reader) Scan(prefix, start []byte, keysOnly bool, fn func(k, v []byte) (bool, error)) error {
	o := badger.DefaultIteratorOptions
	o.PrefetchValues = !keysOnly
	o.PrefetchSize = 64
	o.Prefix = prefix
	it := r.txn.NewIterator(o)
	defer it.Close()
	for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		more := false
		var err error
		if keysOnly {
			more, err = fn(item.Key(), nil)
		} else {
			err = item.Value(func(v []byte) error {
				var ferr error
				more, ferr = fn(item.Key(), v)
				return ferr
			})
		}
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// logAdapter is badger's Logger over ours: warnings and errors pass, the rest is dropped.
type logAdapter struct{ l Logger }

func (a logAdapter) Errorf(f string, args ...any) {
	if a.l != nil {
		a.l.Errorf("badger: "+strings.TrimSuffix(f, "\n"), args...)
	}
}

func (a logAdapter) Warningf(f string, args ...any) {
	if a.l != nil {
		a.l.Warnf("badger: "+strings.TrimSuffix(f, "\n"), args...)
	}
}

func (logAdapter) Infof(string, ...any)  {}
func (logAdapter) Debugf(string, ...any) {}

var _ store.Store = (*Store)(nil)
