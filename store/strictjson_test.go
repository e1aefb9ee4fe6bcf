package store

import (
	"encoding/json"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

func TestCheckJSON(t *testing.T) {
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	deepArr := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	good := []string{
		`{}`, ` {"a":1} `, `{"a":[1,2,{"b":null}],"c":"\u00e9\ud83d\ude00"}`, `"x"`, `1e308`, `-0`,
		`{"a":{"a":1},"b":{"a":2}}`, // the same name in different objects
		`["a","a"]`,                 // repeated strings in an array are values, not names
		`{"a":"\\u0000"}`,           // an escaped backslash before "u"
		deep(MaxJSONDepth), deepArr(MaxJSONDepth),
	}
	for _, g := range good {
		if err := CheckJSON([]byte(g)); err != nil {
			t.Errorf("CheckJSON(%.60q) = %v, want nil", g, err)
		}
	}
	bad := map[string]string{
		"empty":                    ``,
		"trailing garbage":         `{"a":1} x`,
		"two values":               `{} {}`,
		"invalid UTF-8 in string":  "{\"a\":\"\xff\"}",
		"invalid UTF-8 in name":    "{\"\xc3\x28\":1}",
		"overlong UTF-8":           "{\"a\":\"\xc0\xaf\"}",
		"duplicate name":           `{"a":1,"a":2}`,
		"duplicate after escape":   `{"a":1,"\u0061":2}`,
		"duplicate nested":         `{"x":{"b":1,"c":2,"b":3}}`,
		"number overflow":          `{"a":1e400}`,
		"negative overflow":        `{"a":-1e309}`,
		"lone high surrogate":      `{"a":"\ud800"}`,
		"lone low surrogate":       `{"a":"\udc00"}`,
		"high then not low":        `{"a":"\ud800\u0041"}`,
		"surrogate in name":        `{"\udfff":1}`,
		"too deep object":          deep(MaxJSONDepth + 1),
		"too deep array":           deepArr(MaxJSONDepth + 1),
		"hostile depth":            deep(9990),
		"single quotes":            `{'a':1}`,
		"NaN":                      `{"a":NaN}`,
		"unterminated":             `{"a":`,
		"raw control char":         "{\"a\":\"\x01\"}",
		"comment":                  `{"a":1 /* x */}`,
		"trailing comma":           `{"a":1,}`,
		"leading zero":             `{"a":01}`,
		"byte order mark in front": "\ufeff{}",
	}
	for name, b := range bad {
		if err := CheckJSON([]byte(b)); err == nil {
			t.Errorf("%s: CheckJSON(%.60q) accepted it", name, b)
		}
	}
}

// TestValueChecksStrictly: object values and merge patches go through
// CheckJSON, so such input is refused as invalid before it is proposed.
func TestValueChecksStrictly(t *testing.T) {
	for _, v := range []string{`{"a":1,"a":2}`, `{"a":1e999}`, strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)} {
		for _, op := range []Op{OpPut, OpPatch} {
			c := Command{Op: op, Kind: "k", Key: "x", Value: json.RawMessage(v)}
			if err := c.Validate(); err == nil {
				t.Errorf("%s of %.40q validated", op, v)
			}
		}
	}
}

// FuzzCheckJSON: whatever CheckJSON accepts, encoding/json decodes, and a
// value re-encoded from that decoding is accepted again; it never panics.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":"\ud83d\ude00"}]}`, `{"a":1,"a":2}`, `[[[[]]]]`, `"\ud800"`, `1e400`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if CheckJSON(b) != nil {
			return
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("accepted %q but encoding/json refused it: %v", b, err)
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckJSON(again); err != nil {
			t.Fatalf("accepted %q but not its re-encoding %q: %v", b, again, err)
		}
	})
}

// FuzzMergePatch: a stored value and a merge patch that both pass the
// checks merge (when they merge) into a value that passes them too, so a
// patch cannot build what a PUT could not store.
func FuzzMergePatch(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":{"c":[1,2]}}`), []byte(`{"b":{"c":null,"d":"x"}}`))
	f.Add([]byte(`{}`), []byte(`{"a":{"a":{"a":{}}}}`))
	f.Add([]byte(`{"a":"\ud83d\ude00"}`), []byte(`{"a":1e308}`))
	f.Fuzz(func(t *testing.T, cur, patch []byte) {
		if validObject(cur, "value") != nil || validObject(patch, "patch") != nil {
			return
		}
		merged, err := jsonpatch.MergePatch(cur, patch)
		if err != nil {
			return
		}
		if err := CheckJSON(merged); err != nil {
			t.Fatalf("%s merged with %s gave %s, which fails the checks: %v", cur, patch, merged, err)
		}
	})
}
