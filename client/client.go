package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client calls one node's API. Its HTTP client decides how the node is
// reached and verified (the CLI gives it consensus.APITrust's transport).
type Client struct {
	Base  *url.URL // scheme and host of the node's API
	Token string   // bearer token; "" sends none
	HTTP  *http.Client
}

// New makes a client of the API at endpoint (an http:// or https:// URL).
// A nil hc means http.DefaultClient.
func New(endpoint, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(endpoint, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http:// or https:// URL of a node's API", endpoint)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{Base: u, Token: token, HTTP: hc}, nil
}

// Error is an error answer from a node: the JSON body's message and code,
// and the HTTP status.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// ErrorBody is the JSON shape of every error answer, of the API and of the
// members' consensus port alike (api.Error and consensus' are this type).
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	// LeaderAddr, on a member's not-leader answer, is the leader's
	// consensus address.
	LeaderAddr string `json:"leader_addr,omitempty"`
}

// Do sends a request to route (a path from this package, with its query)
// with an optional body (a []byte is sent as it is, anything else as
// JSON) and decodes a JSON answer into out, if not nil (a *[]byte gets the
// raw body). An error answer becomes an *Error.
func (c *Client) Do(ctx context.Context, method, route string, in any, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		switch v := in.(type) {
		case []byte:
			body = bytes.NewReader(v)
		default:
			b, err := json.Marshal(in)
			if err != nil {
				return nil, err
			}
			body = bytes.NewReader(b)
		}
	}
	return c.DoRaw(ctx, method, route, body, nil, out)
}

// DoRaw is Do with a body as it is (declared as JSON) and extra headers.
func (c *Client) DoRaw(ctx context.Context, method, route string, body io.Reader, hdr map[string]string, out any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.URL(route), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.Send(req, hdr, out)
}

// URL is the absolute URL of route on this client's node.
func (c *Client) URL(route string) string { return c.Base.String() + route }

// Authorize sets the bearer token on req.
func (c *Client) Authorize(req *http.Request) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
}

// Send sends a prepared request with the token and extra headers (empty
// values are left out), and decodes the answer as Do does.
func (c *Client) Send(req *http.Request, hdr map[string]string, out any) (http.Header, error) {
	c.Authorize(req)
	for k, v := range hdr {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach raftvip at %s: %w (is the agent running? set --endpoint or RAFTVIP_ENDPOINT)", c.Base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer from %s: %w", c.Base, err)
	}
	if resp.StatusCode >= 300 {
		var e ErrorBody
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return resp.Header, &Error{Status: resp.StatusCode, Code: e.Code, Message: e.Error}
		}
		return resp.Header, &Error{Status: resp.StatusCode, Code: "http", Message: strings.TrimSpace(string(raw))}
	}
	if out != nil {
		if p, ok := out.(*[]byte); ok {
			*p = raw
			return resp.Header, nil
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.Header, fmt.Errorf("decoding the answer from %s: %w", c.Base, err)
		}
	}
	return resp.Header, nil
}
