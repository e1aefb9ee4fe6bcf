package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
)

func testStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rev(n uint64) *uint64 { return &n }

func enc(t *testing.T, c Command) []byte {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatalf("encode %+v: %v", c, err)
	}
	return b
}

func TestApply(t *testing.T) {
	type step struct {
		cmd     Command
		wantErr error
		want    string // expected value after the step ("" = object absent)
	}
	const k, key = "machine", "m1"
	tests := []struct {
		name  string
		steps []step
	}{
		{"create then get", []step{
			{Command{Op: OpCreate, Kind: k, Key: key, Value: json.RawMessage(`{"a": 1}`)}, nil, `{"a":1}`},
		}},
		{"create twice", []step{
			{Command{Op: OpCreate, Kind: k, Key: key, Value: json.RawMessage(`{"a":1}`)}, nil, `{"a":1}`},
			{Command{Op: OpCreate, Kind: k, Key: key, Value: json.RawMessage(`{"a":2}`)}, ErrExists, `{"a":1}`},
		}},
		{"put replaces", []step{
			{Command{Op: OpPut, Kind: k, Key: key, Value: json.RawMessage(`{"a":1,"b":2}`)}, nil, `{"a":1,"b":2}`},
			{Command{Op: OpPut, Kind: k, Key: key, Value: json.RawMessage(`{"c":3}`)}, nil, `{"c":3}`},
		}},
		{"merge patch", []step{
			{Command{Op: OpPut, Kind: k, Key: key, Value: json.RawMessage(`{"a":1,"b":{"x":1,"y":2}}`)}, nil, `{"a":1,"b":{"x":1,"y":2}}`},
			{Command{Op: OpPatch, Kind: k, Key: key, Value: json.RawMessage(`{"a":null,"b":{"y":3},"c":"new"}`)}, nil, `{"b":{"x":1,"y":3},"c":"new"}`},
		}},
		{"patch missing", []step{
			{Command{Op: OpPatch, Kind: k, Key: key, Value: json.RawMessage(`{"a":1}`)}, ErrNotFound, ""},
		}},
		{"delete", []step{
			{Command{Op: OpPut, Kind: k, Key: key, Value: json.RawMessage(`{}`)}, nil, `{}`},
			{Command{Op: OpDelete, Kind: k, Key: key}, nil, ""},
			{Command{Op: OpDelete, Kind: k, Key: key}, ErrNotFound, ""},
		}},
		{"cas match and mismatch", []step{
			{Command{Op: OpPut, Kind: k, Key: key, Value: json.RawMessage(`{"v":1}`), IfRev: rev(0)}, nil, `{"v":1}`},
			{Command{Op: OpPut, Kind: k, Key: key, Value: json.RawMessage(`{"v":2}`), IfRev: rev(0)}, ErrConflict, `{"v":1}`},
			{Command{Op: OpPut, Kind: k, Key: key, Value: json.RawMessage(`{"v":2}`), IfRev: rev(1)}, nil, `{"v":2}`},
			{Command{Op: OpDelete, Kind: k, Key: key, IfRev: rev(1)}, ErrConflict, `{"v":2}`},
			{Command{Op: OpDelete, Kind: k, Key: key, IfRev: rev(3)}, nil, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testStore(t)
			for i, st := range tt.steps {
				index := uint64(i + 1)
				st.cmd.Time = int64(index) * 1e9
				res := s.ApplyBatch([]Entry{{Index: index, Term: 1, Data: enc(t, st.cmd)}})[0]
				if !errors.Is(res.Err, st.wantErr) || (st.wantErr == nil && res.Err != nil) {
					t.Fatalf("step %d: err %v, want %v", i, res.Err, st.wantErr)
				}
				obj, err := s.Get(k, key)
				if st.want == "" {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("step %d: got %v / %v, want not found", i, obj, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: get: %v", i, err)
				}
				if string(obj.Value) != st.want {
					t.Fatalf("step %d: value %s, want %s", i, obj.Value, st.want)
				}
				if st.wantErr == nil && obj.Rev != index {
					t.Fatalf("step %d: rev %d, want %d", i, obj.Rev, index)
				}
			}
		})
	}
}

func TestCreatedKeptUpdatedMoves(t *testing.T) {
	s := testStore(t)
	s.ApplyBatch([]Entry{
		{Index: 1, Term: 1, Data: enc(t, Command{Op: OpPut, Kind: "a", Key: "k", Value: json.RawMessage(`{}`), Time: 1e9})},
		{Index: 2, Term: 1, Data: enc(t, Command{Op: OpPatch, Kind: "a", Key: "k", Value: json.RawMessage(`{"x":1}`), Time: 5e9})},
	})
	obj, err := s.Get("a", "k")
	if err != nil {
		t.Fatal(err)
	}
	if obj.Created.Unix() != 1 || obj.Updated.Unix() != 5 {
		t.Fatalf("created %v updated %v", obj.Created, obj.Updated)
	}
}

func TestValidate(t *testing.T) {
	bad := []Command{
		{Op: "frobnicate", Kind: "a", Key: "k"},
		{Op: OpPut, Kind: "A", Key: "k", Value: json.RawMessage(`{}`)},
		{Op: OpPut, Kind: "1a", Key: "k", Value: json.RawMessage(`{}`)},
		{Op: OpPut, Kind: "a", Key: "", Value: json.RawMessage(`{}`)},
		{Op: OpPut, Kind: "a", Key: "..", Value: json.RawMessage(`{}`)},
		{Op: OpPut, Kind: "a", Key: "x/y", Value: json.RawMessage(`{}`)},
		{Op: OpPut, Kind: "a", Key: "x\x00y", Value: json.RawMessage(`{}`)},
		{Op: OpPut, Kind: "a", Key: "k", Value: json.RawMessage(`[1]`)},
		{Op: OpPut, Kind: "a", Key: "k", Value: json.RawMessage(`{"a":`)},
		{Op: OpPut, Kind: "a", Key: "k"},
		{Op: OpPut, Kind: "a", Key: "k", Value: json.RawMessage(`{"a":"` + string(bytes.Repeat([]byte("x"), MaxValueSize)) + `"}`)},
		{Op: OpDelete, Kind: "a", Key: "k", Value: json.RawMessage(`{}`)},
		{Op: OpMemberPut},
		{Op: OpMemberPut, Kind: "a", Member: &Member{ID: "n1"}},
	}
	for i, c := range bad {
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%d: %+v: got %v, want ErrInvalid", i, c.Op, err)
		}
	}
}

func TestDecodeRefusesUnknownVersionAndFields(t *testing.T) {
	if _, err := Decode([]byte{99, '{', '}'}); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("got %v", err)
	}
	if _, err := Decode(append([]byte{CommandVersion}, `{"op":"put","kind":"a","key":"k","value":{},"bogus":1}`...)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}

func TestList(t *testing.T) {
	s := testStore(t)
	var entries []Entry
	for i := 0; i < 25; i++ {
		entries = append(entries, Entry{Index: uint64(i + 1), Term: 1, Data: enc(t, Command{Op: OpPut, Kind: "m", Key: fmt.Sprintf("k%02d", i), Value: json.RawMessage(`{}`)})})
	}
	entries = append(entries, Entry{Index: 26, Term: 1, Data: enc(t, Command{Op: OpPut, Kind: "ma", Key: "k00", Value: json.RawMessage(`{}`)})})
	s.ApplyBatch(entries)
	var got []string
	opts := ListOptions{Limit: 10}
	for pages := 0; pages < 10; pages++ {
		p, err := s.List("m", opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.Items {
			got = append(got, o.Key)
		}
		if p.Next == "" {
			break
		}
		opts.After = p.Next
	}
	if len(got) != 25 || got[0] != "k00" || got[24] != "k24" {
		t.Fatalf("got %v", got)
	}
	p, err := s.List("m", ListOptions{Prefix: "k1"})
	if err != nil || len(p.Items) != 10 {
		t.Fatalf("prefix: %v %v", p, err)
	}
	if _, err := s.List("m", ListOptions{Limit: MaxListLimit + 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("limit: %v", err)
	}
}

func TestRestartKeepsAppliedAndSkipsReplay(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	e1 := Entry{Index: 1, Term: 1, Data: enc(t, Command{Op: OpCreate, Kind: "a", Key: "k", Value: json.RawMessage(`{}`)})}
	s.ApplyBatch([]Entry{e1})
	_, h1 := s.StateHash()
	s.Close()
	s, err = Open(dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if idx, h := s.StateHash(); idx != 1 || h != h1 {
		t.Fatalf("after restart: %d %s, want 1 %s", idx, h, h1)
	}
	// Replaying entry 1 must not fail with ErrExists nor change the hash.
	if res := s.ApplyBatch([]Entry{e1})[0]; res.Err != nil {
		t.Fatalf("replay: %v", res.Err)
	}
	if _, h := s.StateHash(); h != h1 {
		t.Fatal("replay changed the hash")
	}
}

func TestSnapshotRestoreAndHash(t *testing.T) {
	a, b := testStore(t), testStore(t)
	var entries []Entry
	for i := 0; i < 50; i++ {
		entries = append(entries, Entry{Index: uint64(i + 1), Term: 1, Data: enc(t, Command{Op: OpPut, Kind: "m", Key: fmt.Sprint(i), Value: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})})
	}
	a.ApplyBatch(entries)
	sn, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	// Writes after the snapshot do not leak into it.
	a.ApplyBatch([]Entry{{Index: 51, Term: 1, Data: enc(t, Command{Op: OpDelete, Kind: "m", Key: "0"})}})
	if err := b.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get("m", "0"); err != nil {
		t.Fatalf("restored store lacks m/0: %v", err)
	}
	ia, ha := a.HashAt(50)
	ib, hb := b.StateHash()
	if !ha || ib != 50 || ia != hb {
		t.Fatalf("hash at 50: %s vs %s (index %d)", ia, hb, ib)
	}
	// Same entries on both stores give the same hash.
	b.ApplyBatch([]Entry{{Index: 51, Term: 1, Data: enc(t, Command{Op: OpDelete, Kind: "m", Key: "0"})}})
	if _, x := a.StateHash(); func() string { _, y := b.StateHash(); return y }() != x {
		t.Fatal("hashes differ after the same entry")
	}
	if err := b.Restore(bytes.NewReader([]byte("not a database"))); err == nil {
		t.Fatal("garbage snapshot restored")
	}
	if _, err := b.Get("m", "1"); err != nil {
		t.Fatalf("failed restore damaged the store: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{CommandVersion})
	f.Add(append([]byte{CommandVersion}, `{"op":"put","kind":"a","key":"k","value":{"x":1},"time":1}`...))
	f.Add(append([]byte{CommandVersion}, `{"op":"patch","kind":"a","key":"..","value":{}}`...))
	f.Add(append([]byte{CommandVersion}, `{"op":"member-put","member":{"id":"n1"}}`...))
	f.Add(append([]byte{CommandVersion}, `{"op":"put","kind":"a","key":"k","value":[1]}`...))
	f.Add([]byte{2, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same command.
		again, err := c.Encode()
		if err != nil {
			t.Fatalf("decoded command does not re-encode: %v", err)
		}
		c2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		b1, _ := json.Marshal(c)
		b2, _ := json.Marshal(c2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("round trip changed the command: %s vs %s", b1, b2)
		}
	})
}
