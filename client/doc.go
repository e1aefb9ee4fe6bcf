// Package client is the Go client of the raftvip API: its route constants
// and builders (Object, File, JobLog, Member, Token), the request and
// answer bodies both ends use (EnrollRequest, JoinInfo, ErrorBody, ...),
// and Client, which sends a request and turns an error answer into an
// *Error. The CLI, the join in consensus/, the tests and the fault suite
// name routes through it; no API path literal lives outside api/ and this
// package. It imports nothing of raftvip's, so that any package may use
// it; how a node is reached and verified is the *http.Client given to New
// (the CLI's comes from consensus.APITrust).
//
// # Usage
//
//	c, err := client.New("https://198.18.0.1:8092", token, httpClient)
//	var st consensus.NodeStatus
//	_, err = c.Do(ctx, "GET", client.HANode, nil, &st)
//	_, err = c.Do(ctx, "PUT", client.Object("machine", "m1"), []byte(`{"name":"m1"}`), nil)
package client
