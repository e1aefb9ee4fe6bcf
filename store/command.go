package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// CommandVersion is the version byte that starts every encoded Command.
// A node refuses to decode a version it does not know, so a newer node's
// entries are never half-understood by an older one.
const CommandVersion byte = 1

// Limits on what a command may carry. They are checked by Validate, before a
// command is proposed, and again by Decode on every node.
const (
	MaxKindLen   = 63
	MaxKeyLen    = 255
	MaxValueSize = 256 << 10 // hashicorp/raft advises entries well under 512 KiB
)

// Op names an operation on the replicated state.
type Op string

// The operations a Command can carry.
const (
	OpCreate       Op = "create"        // create an object; fails with ErrExists if present
	OpPut          Op = "put"           // create or replace an object
	OpPatch        Op = "patch"         // RFC 7386 merge patch of an existing object
	OpDelete       Op = "delete"        // delete an existing object
	OpMemberPut    Op = "member-put"    // record a cluster member's metadata
	OpMemberDelete Op = "member-delete" // forget a cluster member's metadata
	OpFilePut      Op = "file-put"      // make a file (a replicated blob) visible at a path
	OpFileDelete   Op = "file-delete"   // remove a file
	OpJobAppend    Op = "job-append"    // append a chunk to a job's log
	// OpJoinTokenUse marks a join token (Key: its nonce; IfRev: its expiry,
	// Unix seconds) as used, so that each is good for one join.
	OpJoinTokenUse Op = "join-token-use"
	OpTokenPut     Op = "token-put"    // create a named API token (Token)
	OpTokenDelete  Op = "token-delete" // revoke a named API token (Key: its name)
)

// MaxLogChunk is the largest chunk one job log append may carry.
const MaxLogChunk = 64 << 10

// Sentinel errors. Validation errors wrap ErrInvalid; results of Apply carry
// ErrNotFound, ErrExists or ErrConflict.
var (
	// ErrInvalid means a command or a name is malformed; nothing was applied.
	ErrInvalid = errors.New("invalid command")
	// ErrNotFound means the object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means a create found the object already present.
	ErrExists = errors.New("already exists")
	// ErrConflict means the object's revision did not match the one required.
	ErrConflict = errors.New("revision mismatch")
	// ErrUnknownVersion means an entry was encoded by a newer raftvip.
	ErrUnknownVersion = errors.New("unknown command version")
)

// Command is one change to the replicated state. It is built by the node that
// proposes it (which stamps Time, so that Apply never reads a clock), checked
// with Validate, encoded with Encode, and applied in log order on every node.
type Command struct {
	Op   Op     `json:"op"`
	Kind string `json:"kind,omitempty"`
	Key  string `json:"key,omitempty"`
	// Value is the object (create, put) or the merge patch (patch); a JSON object.
	Value json.RawMessage `json:"value,omitempty"`
	// IfRev, when set, makes the command conditional: it applies only if the
	// object's current revision equals *IfRev (0 means "must not exist").
	IfRev *uint64 `json:"if_rev,omitempty"`
	// Time is the proposer's wall clock, Unix nanoseconds.
	Time int64 `json:"time"`
	// Member is the member record for OpMemberPut / OpMemberDelete.
	Member *Member `json:"member,omitempty"`
	// File is the file for OpFilePut / OpFileDelete (only Namespace and
	// Path for a delete).
	File *FileRef `json:"file,omitempty"`
	// Job and Data are the job ID and the chunk for OpJobAppend; IfRev,
	// when set, is the log length the append expects (so that a retried
	// append is never applied twice).
	Job  string `json:"job,omitempty"`
	Data []byte `json:"data,omitempty"`
	// Token is the named API token for OpTokenPut (its hash, not its
	// secret).
	Token *Token `json:"token,omitempty"`
}

// FileRef names a file and, for OpFilePut, the blob that holds it.
type FileRef struct {
	Namespace   string `json:"namespace"`
	Path        string `json:"path"`
	SHA256      string `json:"sha256,omitempty"`
	Size        int64  `json:"size,omitempty"`
	ContentType string `json:"content_type,omitempty"`
}

// Member is the replicated record of one cluster member.
type Member struct {
	ID            string `json:"id"`
	ConsensusAddr string `json:"consensus_addr"`
	APIURL        string `json:"api_url"`
	Observer      bool   `json:"observer,omitempty"`
	VirtInterface string `json:"virt_interface,omitempty"`
	Joined        int64  `json:"joined"`
}

var kindRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// ValidKind reports whether kind is a usable object kind: [a-z][a-z0-9-]*, at
// most MaxKindLen bytes.
func ValidKind(kind string) error {
	if len(kind) == 0 || len(kind) > MaxKindLen || !kindRE.MatchString(kind) {
		return fmt.Errorf("%w: kind %q must match [a-z][a-z0-9-]* and be at most %d bytes", ErrInvalid, kind, MaxKindLen)
	}
	return nil
}

// ValidKey reports whether key is a safe path segment: 1 to MaxKeyLen bytes
// of UTF-8, no '/', '\', NUL, C0 or C1 control characters or bidirectional
// formatting characters, and not "." or "..".
func ValidKey(key string) error {
	switch {
	case key == "" || len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key must be 1 to %d bytes", ErrInvalid, MaxKeyLen)
	case key == "." || key == "..":
		return fmt.Errorf("%w: key %q is not allowed", ErrInvalid, key)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalid)
	}
	for _, r := range key {
		if IsControl(r) || r == '/' || r == '\\' || bidiControl(r) {
			return fmt.Errorf("%w: key %q contains a forbidden character %q", ErrInvalid, key, r)
		}
	}
	return nil
}

// IsControl reports the C0 and C1 control characters and DEL.
func IsControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }

// bidiControl reports the Unicode bidirectional formatting characters
// (the "Trojan Source" set), which make a key display as another.
func bidiControl(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

func validObject(v json.RawMessage, what string) error {
	if len(v) == 0 {
		return fmt.Errorf("%w: %s is required", ErrInvalid, what)
	}
	if len(v) > MaxValueSize {
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrInvalid, what, len(v), MaxValueSize)
	}
	if err := CheckJSON(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, what, err)
	}
	if t := bytes.TrimLeft(v, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("%w: %s must be a JSON object", ErrInvalid, what)
	}
	return nil
}

// Validate checks the command as a whole. A command that passes applies
// without a decoding or type error on every node; it may still fail on state
// (ErrNotFound, ErrExists, ErrConflict).
func (c *Command) Validate() error {
	if c.Token != nil && c.Op != OpTokenPut {
		return fmt.Errorf("%w: %s takes no token", ErrInvalid, c.Op)
	}
	switch c.Op {
	case OpTokenPut:
		if c.Token == nil {
			return fmt.Errorf("%w: %s needs a token", ErrInvalid, c.Op)
		}
		if c.Kind != "" || c.Key != "" || len(c.Value) > 0 || c.IfRev != nil || c.Member != nil || c.File != nil || c.Job != "" || len(c.Data) > 0 {
			return fmt.Errorf("%w: %s takes only a token", ErrInvalid, c.Op)
		}
		return c.Token.validate()
	case OpTokenDelete:
		if err := ValidTokenName(c.Key); err != nil {
			return err
		}
		if c.Kind != "" || len(c.Value) > 0 || c.IfRev != nil || c.Member != nil || c.File != nil || c.Job != "" || len(c.Data) > 0 {
			return fmt.Errorf("%w: %s takes only a name", ErrInvalid, c.Op)
		}
		return nil
	case OpCreate, OpPut, OpPatch, OpDelete:
		if err := ValidKind(c.Kind); err != nil {
			return err
		}
		if err := ValidKey(c.Key); err != nil {
			return err
		}
		if c.Member != nil || c.File != nil || c.Job != "" || len(c.Data) > 0 {
			return fmt.Errorf("%w: %s takes no member, file or job", ErrInvalid, c.Op)
		}
	case OpJobAppend:
		if err := ValidKey(c.Job); err != nil {
			return fmt.Errorf("job ID: %w", err)
		}
		if len(c.Data) == 0 || len(c.Data) > MaxLogChunk {
			return fmt.Errorf("%w: a log chunk must be 1 to %d bytes", ErrInvalid, MaxLogChunk)
		}
		if c.Kind != "" || c.Key != "" || len(c.Value) > 0 || c.Member != nil || c.File != nil {
			return fmt.Errorf("%w: %s takes only a job and data", ErrInvalid, c.Op)
		}
		return nil
	case OpFilePut, OpFileDelete:
		if c.File == nil {
			return fmt.Errorf("%w: %s needs a file", ErrInvalid, c.Op)
		}
		if c.Kind != "" || c.Key != "" || len(c.Value) > 0 || c.Member != nil || c.Job != "" || len(c.Data) > 0 {
			return fmt.Errorf("%w: %s takes only a file", ErrInvalid, c.Op)
		}
		if _, err := CleanFilePath(c.File.Namespace, c.File.Path); err != nil {
			return err
		}
		if c.Op == OpFileDelete {
			return nil
		}
		if err := ValidSHA256(c.File.SHA256); err != nil {
			return err
		}
		if c.File.Size < 0 || len(c.File.ContentType) > 255 {
			return fmt.Errorf("%w: file size must not be negative and content type at most 255 bytes", ErrInvalid)
		}
		return nil
	case OpJoinTokenUse:
		if err := ValidKey(c.Key); err != nil {
			return fmt.Errorf("join token nonce: %w", err)
		}
		if c.IfRev == nil || c.Kind != "" || len(c.Value) > 0 || c.Member != nil || c.File != nil || c.Job != "" || len(c.Data) > 0 {
			return fmt.Errorf("%w: %s takes only a nonce and an expiry", ErrInvalid, c.Op)
		}
		return nil
	case OpMemberPut, OpMemberDelete:
		if c.Member == nil || c.Member.ID == "" {
			return fmt.Errorf("%w: %s needs a member with an id", ErrInvalid, c.Op)
		}
		if c.Kind != "" || c.Key != "" || len(c.Value) > 0 || c.IfRev != nil || c.File != nil || c.Job != "" || len(c.Data) > 0 {
			return fmt.Errorf("%w: %s takes only a member", ErrInvalid, c.Op)
		}
		return nil
	default:
		return fmt.Errorf("%w: unknown op %q", ErrInvalid, c.Op)
	}
	switch c.Op {
	case OpCreate, OpPut:
		return validObject(c.Value, "value")
	case OpPatch:
		return validObject(c.Value, "merge patch")
	case OpDelete:
		if len(c.Value) > 0 {
			return fmt.Errorf("%w: delete takes no value", ErrInvalid)
		}
	}
	return nil
}

// Encode returns the versioned wire form of a valid command.
func (c *Command) Encode() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding command: %w", err)
	}
	return append([]byte{CommandVersion}, body...), nil
}

// Decode parses and validates an encoded command. It never panics, whatever
// the bytes.
func Decode(data []byte) (*Command, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrInvalid)
	}
	if data[0] != CommandVersion {
		return nil, fmt.Errorf("%w: %d (this node knows %d); upgrade this node", ErrUnknownVersion, data[0], CommandVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data[1:]))
	dec.DisallowUnknownFields()
	var c Command
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after command", ErrInvalid)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}
