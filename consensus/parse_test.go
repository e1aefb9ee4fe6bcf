package consensus

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseHAStateRefuses(t *testing.T) {
	good := `{"ConsensusID":"n1","HaID":"c1","ConsensusAddr":"198.18.0.1:8093","ApiUrl":"http://198.18.0.1:8092","Token":"t","Valid":true}`
	if _, err := ParseHAState([]byte(good)); err != nil {
		t.Fatalf("good state: %v", err)
	}
	for name, b := range map[string]string{
		"trailing garbage":   good + "x",
		"duplicate field":    `{"HaID":"a","HaID":"b"}`,
		"unknown field":      `{"HaID":"a","Bogus":1}`,
		"not an object":      `[1]`,
		"valid but no token": `{"ConsensusID":"n1","HaID":"c1","ConsensusAddr":"a:1","Valid":true}`,
		"control character":  `{"HaID":"a\u0001b"}`,
		"wrong type":         `{"Valid":"yes"}`,
		"deep":               strings.Repeat(`{"HaID":`, 100) + "1" + strings.Repeat("}", 100),
	} {
		if _, err := ParseHAState([]byte(b)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzParseHAState: whatever ParseHAState accepts survives a round trip
// through WriteHAState's encoding.
func FuzzParseHAState(f *testing.F) {
	f.Add([]byte(`{"ConsensusID":"n1","HaID":"c1","ConsensusAddr":"198.18.0.1:8093","ApiUrl":"http://x","Token":"t","Valid":true}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"Valid":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseHAState(b)
		if err != nil {
			return
		}
		again, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		s2, err := ParseHAState(again)
		if err != nil || *s2 != *s {
			t.Fatalf("round trip of %q: %+v, %v", b, s2, err)
		}
	})
}

// FuzzParseToken: ParseToken never panics, and what it accepts has the
// claims a joining node relies on.
func FuzzParseToken(f *testing.F) {
	claims, _ := json.Marshal(TokenClaims{ClusterID: "c1", CAHash: "h", Expires: 1})
	f.Add(tokenPrefix + "." + base64.RawURLEncoding.EncodeToString(claims) + ".sig")
	f.Add("garbage")
	f.Add(tokenPrefix + "..")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := ParseToken(tok)
		if err != nil {
			return
		}
		if c.ClusterID == "" || c.CAHash == "" {
			t.Fatalf("accepted %q with empty claims %+v", tok, c)
		}
	})
}
