package consensus

import (
	"io"

	"github.com/hashicorp/raft"

	"github.com/raftvip/raftvip/store"
)

// fsm adapts store.Store to raft.BatchingFSM. It holds no state of its own.
type fsm struct{ s *store.Store }

var _ raft.BatchingFSM = (*fsm)(nil)

func (f *fsm) Apply(l *raft.Log) interface{} { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies a run of committed entries in one store transaction.
// Only LogCommand entries carry data; the others advance the applied index.
func (f *fsm) ApplyBatch(logs []*raft.Log) []interface{} {
	entries := make([]store.Entry, len(logs))
	for i, l := range logs {
		entries[i] = store.Entry{Index: l.Index, Term: l.Term}
		if l.Type == raft.LogCommand {
			entries[i].Data = l.Data
		}
	}
	results := f.s.ApplyBatch(entries)
	out := make([]interface{}, len(results))
	for i, r := range results {
		out[i] = r
	}
	return out
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	sn, err := f.s.Snapshot()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{sn}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.s.Restore(rc)
}

type fsmSnapshot struct{ sn *store.Snapshot }

// Persist streams the store to the sink; nothing is held in memory.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.sn.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.sn.Release() }
