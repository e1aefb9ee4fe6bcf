package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"

	bolt "go.etcd.io/bbolt"
)

// Roles a named API token can have, each including the ones before it.
const (
	RoleRead  = "read"  // GET and HEAD of objects, files, job logs and status
	RoleWrite = "write" // and every change to objects, files and job logs
	RoleAdmin = "admin" // and HA administration (enroll, remove, transfer, join tokens) and tokens
)

// RoleRank orders the roles (0 for an unknown one).
func RoleRank(role string) int {
	switch role {
	case RoleRead:
		return 1
	case RoleWrite:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Token is the replicated record of a named API token: never the secret,
// only its SHA-256.
type Token struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	SHA256  string `json:"sha256,omitempty"`
	Created int64  `json:"created"` // Unix nanoseconds, the proposer's clock
}

var tokenNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidTokenName reports whether name can name a token: [a-z0-9][a-z0-9._-]*,
// at most 63 bytes.
func ValidTokenName(name string) error {
	if !tokenNameRE.MatchString(name) {
		return fmt.Errorf("%w: token name %q must match [a-z0-9][a-z0-9._-]* and be at most 63 bytes", ErrInvalid, name)
	}
	return nil
}

// HashToken is the SHA-256 that a token's record keeps of its secret.
func HashToken(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

var bucketTokens = []byte("tokens") // name -> Token

func (t *Token) validate() error {
	if err := ValidTokenName(t.Name); err != nil {
		return err
	}
	if RoleRank(t.Role) == 0 {
		return fmt.Errorf("%w: role %q must be read, write or admin", ErrInvalid, t.Role)
	}
	return ValidSHA256(t.SHA256)
}

func applyToken(tx *bolt.Tx, c *Command) error {
	b, err := tx.CreateBucketIfNotExists(bucketTokens) // a snapshot from before it may lack it
	if err != nil {
		return err
	}
	if c.Op == OpTokenDelete {
		if b.Get([]byte(c.Key)) == nil {
			return fmt.Errorf("%w: token %s", ErrNotFound, c.Key)
		}
		return b.Delete([]byte(c.Key))
	}
	if b.Get([]byte(c.Token.Name)) != nil {
		return fmt.Errorf("%w: token %s", ErrExists, c.Token.Name)
	}
	rec := *c.Token
	rec.Created = c.Time
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return b.Put([]byte(rec.Name), v)
}

// Tokens lists the named tokens (with their hashes), by name.
func (s *Store) Tokens() ([]Token, error) {
	var out []Token
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var t Token
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}

// TokenBySecret finds the named token whose secret this is.
func (s *Store) TokenBySecret(secret string) (Token, bool) {
	want := HashToken(secret)
	ts, err := s.Tokens()
	if err != nil {
		return Token{}, false
	}
	for _, t := range ts {
		if t.SHA256 == want {
			return t, true
		}
	}
	return Token{}, false
}
