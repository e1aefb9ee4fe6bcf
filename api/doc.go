// Package api is the client HTTP/JSON API of a raftvip node, on top of
// consensus/ and store/.
//
// # Endpoints
//
//	GET    /api/v1/objects/{kind}?prefix=&after=&limit=   list a kind
//	GET    /api/v1/objects/{kind}/{key}                   get one (ETag = revision)
//	POST   /api/v1/objects/{kind}/{key}                   create (409 if present)
//	PUT    /api/v1/objects/{kind}/{key}                   create or replace (If-Match / If-None-Match: *)
//	PATCH  /api/v1/objects/{kind}/{key}                   RFC 7386 merge patch
//	DELETE /api/v1/objects/{kind}/{key}                   delete
//	GET    /api/v1/files/{ns}?prefix=&after=&limit=       list files (ns: files, isos, bundles, plugins)
//	PUT    /api/v1/files/{ns}/{path...}                   upload (X-Checksum-Sha256 / Content-Digest, If-Match)
//	GET    /api/v1/files/{ns}/{path...}                   download (Range; ETag = its SHA-256)
//	DELETE /api/v1/files/{ns}/{path...}                   delete
//	GET    /api/v1/jobs/{id}/log?offset=&follow&wait=     read, or follow, a job log
//	POST   /api/v1/jobs/{id}/log                          append (X-Raftvip-Log-Offset: the length expected)
//	GET    /api/v1/ha/status | node | state | members | failover-safe
//	POST   /api/v1/ha/init | join | token | transfer | members (enroll) | snapshot | rotate-certs
//	DELETE /api/v1/ha/members/{id-or-addr}
//	GET    /api/v1/tokens | POST /api/v1/tokens | DELETE /api/v1/tokens/{name}
//
// Reads are linearizable on the active node. A passive node forwards reads
// and writes to the leader over the mutually authenticated consensus port (or
// answers 307 to the leader's API with ?redirect or X-Raftvip-Redirect: 1);
// ?stale serves a read locally with headers saying how stale it may be.
// Every error is JSON {"error": ..., "code": ...} with a 4xx or 5xx status.
// Every error answer but one is a refusal made before anything was proposed:
// the request changed nothing and may be retried as it is (503 comes with
// Retry-After). The one exception is 504 with code "outcome_unknown"
// (CodeOutcomeUnknown): the write was proposed and then leadership was lost,
// the node stopped, or the link to the leader broke after the request was
// forwarded, so it may or may not have been applied; read before retrying,
// or make the write conditional (If-Match, If-None-Match: *, a job log's
// expected offset) so that a retry cannot apply it twice. Requests need a bearer
// token: the cluster's (ha-state.json Token, admin) or a named token with a
// role (read: GET and HEAD; write: and changes to objects, files and job logs;
// admin: and /ha/* changes, ha-state and tokens; 403 when the role is short),
// except those from members; a node in no cluster yet answers only to its
// bootstrap secret (consensus.BootstrapSecretFile). Enroll reaches the new
// node over TLS pinned to the certificate its secret names
// (consensus.BootstrapPin). The agent serves this API over TLS
// (consensus.Node.APICertificate) unless told --api-plain.
//
// The Server depends on Node, an interface this package defines by what its
// endpoints use (ReadNode, WriteNode, HANode, FileNode); *consensus.Node is
// one, and the handler tests use a small in-memory fake.
//
// Input is checked strictly before anything is proposed: JSON bodies must be
// I-JSON nested at most store.MaxJSONDepth levels and declared as JSON if
// declared at all (415 otherwise), If-Match is one strong quoted revision,
// Range is checked before a file is served, list parameters are known and
// single. Guard wraps every listener: unclean paths get 400 before routing
// and a request body idle for 15 s gets 408.
package api
