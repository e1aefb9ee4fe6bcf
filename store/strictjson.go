package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// MaxJSONDepth is how deeply arrays and objects may nest in a value or a
// merge patch. Merge patches and decoders recurse once per level; without a
// bound one 60 KB patch nested 10,000 deep held every node's apply for
// seconds and took each to over a GiB.
const MaxJSONDepth = 64

// CheckJSON accepts exactly one JSON value (surrounding whitespace allowed)
// that is also I-JSON (RFC 7493): valid UTF-8 with no unpaired surrogate
// escapes, no duplicate member names in an object, numbers that fit a
// float64, and at most MaxJSONDepth levels of nesting. It walks the input
// iteratively, so hostile nesting costs nothing before it is refused.
func CheckJSON(data []byte) error {
	if !utf8.Valid(data) {
		return errors.New("not valid UTF-8")
	}
	// The scanner behind json.Valid is iterative; it checks the syntax
	// (and that one value fills the input) before anything else looks.
	if !json.Valid(data) {
		return errors.New("not valid JSON (or more than one value)")
	}
	if loneSurrogate(data) {
		return errors.New("a \\u escape names half of a UTF-16 surrogate pair")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object bool
		names  map[string]struct{}
		name   bool // in an object: the next string is a member name
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		top := len(stack) - 1
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if len(stack) >= MaxJSONDepth {
					return fmt.Errorf("nested more than %d levels deep", MaxJSONDepth)
				}
				if top >= 0 && stack[top].object {
					stack[top].name = true
				}
				stack = append(stack, frame{object: v == '{', name: v == '{'})
			case '}', ']':
				stack = stack[:top]
				continue
			}
			continue
		case string:
			if top >= 0 && stack[top].object && stack[top].name {
				if stack[top].names == nil {
					stack[top].names = map[string]struct{}{}
				}
				if _, dup := stack[top].names[v]; dup {
					return fmt.Errorf("duplicate member name %q", v)
				}
				stack[top].names[v] = struct{}{}
				stack[top].name = false
				continue
			}
		case json.Number:
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil || math.IsInf(f, 0) {
				return fmt.Errorf("number %.40s is out of range", string(v))
			}
		}
		if top >= 0 && stack[top].object {
			stack[top].name = true
		}
	}
}

// loneSurrogate reports whether JSON text holds a \u escape of an unpaired
// UTF-16 surrogate, which decoders silently turn into U+FFFD. Outside
// strings a backslash is not valid JSON, so the raw text can be scanned.
func loneSurrogate(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+1 >= len(b) {
			return false
		}
		if b[i+1] != 'u' {
			i++ // an escaped character, perhaps a backslash
			continue
		}
		r, ok := hex4(b, i+2)
		if !ok {
			i++
			continue
		}
		i += 5 // the escape's last hex digit
		switch {
		case r >= 0xd800 && r < 0xdc00:
			if i+2 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
				if r2, ok := hex4(b, i+3); ok && r2 >= 0xdc00 && r2 <= 0xdfff {
					i += 6
					continue
				}
			}
			return true
		case r >= 0xdc00 && r <= 0xdfff:
			return true
		}
	}
	return false
}

func hex4(b []byte, at int) (uint16, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[at:at+4]), 16, 16)
	return uint16(v), err == nil
}
