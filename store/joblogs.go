package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Job logs are append-only byte streams, one per job ID, appended in
// chunks through the log (OpJobAppend) and read from any offset.

func jobChunkKey(job string, off uint64) []byte {
	k := make([]byte, 0, len(job)+9)
	k = append(k, job...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, off)
}

func jobLength(tx *bolt.Tx, job string) uint64 {
	if v := tx.Bucket(bucketJobLens).Get([]byte(job)); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func applyJobAppend(tx *bolt.Tx, c *Command) error {
	n := jobLength(tx, c.Job)
	if c.IfRev != nil && *c.IfRev != n {
		return fmt.Errorf("%w: the log of job %s is %d bytes long, not %d", ErrConflict, c.Job, n, *c.IfRev)
	}
	if err := tx.Bucket(bucketJobLogs).Put(jobChunkKey(c.Job, n), c.Data); err != nil {
		return err
	}
	return tx.Bucket(bucketJobLens).Put([]byte(c.Job), binary.BigEndian.AppendUint64(nil, n+uint64(len(c.Data))))
}

// ReadJobLog returns up to max bytes of a job's log from offset, and the
// log's whole length. A job with no log reads as empty.
func (s *Store) ReadJobLog(job string, offset uint64, max int) ([]byte, uint64, error) {
	if err := ValidKey(job); err != nil {
		return nil, 0, fmt.Errorf("job ID: %w", err)
	}
	var out []byte
	var length uint64
	err := s.view(func(tx *bolt.Tx) error {
		length = jobLength(tx, job)
		if offset > length {
			return fmt.Errorf("%w: offset %d is past the end of the log (%d bytes)", ErrInvalid, offset, length)
		}
		c := tx.Bucket(bucketJobLogs).Cursor()
		prefix := append([]byte(job), 0)
		k, v := c.Seek(jobChunkKey(job, offset))
		// The chunk that holds offset may start before it.
		if k == nil || len(k) != len(prefix)+8 || string(k[:len(prefix)]) != string(prefix) || binary.BigEndian.Uint64(k[len(prefix):]) > offset {
			k, v = c.Prev()
		}
		for ; k != nil && len(out) < max; k, v = c.Next() {
			if len(k) != len(prefix)+8 || string(k[:len(prefix)]) != string(prefix) {
				break
			}
			start := binary.BigEndian.Uint64(k[len(prefix):])
			end := start + uint64(len(v))
			if end <= offset {
				continue
			}
			from := uint64(0)
			if offset > start {
				from = offset - start
			}
			chunk := v[from:]
			if room := max - len(out); len(chunk) > room {
				chunk = chunk[:room]
			}
			out = append(out, chunk...)
		}
		return nil
	})
	return out, length, err
}

// JobsChanged returns a channel closed at the next job log append.
func (s *Store) JobsChanged() <-chan struct{} {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	if s.jobsWake == nil {
		s.jobsWake = make(chan struct{})
	}
	return s.jobsWake
}

func (s *Store) notifyJobs() {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	if s.jobsWake != nil {
		close(s.jobsWake)
		s.jobsWake = nil
	}
}
