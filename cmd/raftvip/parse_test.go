package main

import (
	"encoding/json"
	"testing"
)

// FuzzParseIntroduction: an accepted introduction has a usable join URL
// and a token whose claims parse; nothing panics.
func FuzzParseIntroduction(f *testing.F) {
	f.Add([]byte(`{"join_url":"http://198.18.0.1:8092","token":"rvj1.eyJjIjoiYyIsImgiOiJoIiwiZSI6MX0.sig"}`))
	f.Add([]byte(`{"join_url":"ftp://x","token":"t"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		intro, err := parseIntroduction(b)
		if err != nil {
			return
		}
		if checkURL(intro.JoinURL) != nil || intro.Token == "" {
			t.Fatalf("accepted %q: %+v", b, intro)
		}
	})
}

// FuzzParseConfigFile: an accepted config file is a JSON object of flag
// values that re-encodes and parses to the same settings.
func FuzzParseConfigFile(f *testing.F) {
	f.Add([]byte(`{"timing":"fast","max-body":1048576,"observer":true,"vip":["198.18.0.100/24"]}`))
	f.Add([]byte(`{"a":{"b":1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := parseConfigFile(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(vals)
		if err != nil {
			t.Fatal(err)
		}
		vals2, err := parseConfigFile(again)
		if err != nil || len(vals2) != len(vals) {
			t.Fatalf("round trip of %q: %v, %v", b, vals2, err)
		}
	})
}
