// Package store is raftvip's replicated state machine: typed JSON objects
// addressed by kind and key, kept on disk in bbolt together with the index of
// the last applied Raft entry, so that a restart does not replay the log.
//
// The package knows nothing about networks and nothing about Raft beyond the
// shape of an entry (index, term, data). consensus/ adapts it to raft.FSM.
//
// # Usage
//
// Build a Command, check it with Validate and encode it with Encode on the
// node that proposes it; every node then hands the encoded bytes to
// ApplyBatch in log order. Applying is deterministic: the same entries in
// the same order give the same state, and StateHash proves it. Reads (Get,
// List, GetFile, ListFiles, the job logs) never go through the log.
//
//	s, err := store.Open(dir, logger)
//	cmd := store.Command{Op: store.OpPut, Kind: "machine", Key: "m1", Value: raw, Time: now}
//	if err := cmd.Validate(); err != nil { ... }   // 4xx before anything is proposed
//	data, _ := cmd.Encode()
//	res := s.ApplyBatch([]store.Entry{{Index: 7, Term: 2, Data: data}})[0]
//
// Besides objects the state holds the cluster's members, files (blob
// references), job logs, named API tokens (their SHA-256 and role, never the
// secret: Tokens, TokenBySecret) and the nonces of join tokens already used
// (OpJoinTokenUse, so each is good for one join). CheckJSON is the strict
// I-JSON check, bounded in depth, that every value and merge patch passes
// before it is proposed.
//
// Snapshots are streamed: Snapshot opens a consistent view of the database
// whose WriteTo copies it to a writer without holding it in memory, and
// Restore streams one back to disk before it replaces the live state.
//
// File contents are blobs named by their SHA-256 under blobs/: an Upload
// writes one as it arrives (hashing it, pacing its writeback, letting
// readers follow it as it grows) and Commit verifies, syncs and names it;
// PutBlob, OpenBlob and ReclaimBlobs do the rest. The file records that
// refer to blobs are replicated like objects.
package store
