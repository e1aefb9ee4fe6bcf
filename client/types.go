package client

// The API's request and answer bodies that Go callers send or read; api/
// and consensus/ use these same types (under their old names there too).

// EnrollRequest asks the cluster to enroll the unjoined node at URL.
type EnrollRequest struct {
	URL string `json:"url"`
	// Secret is the new node's bootstrap secret (the bootstrap-secret file
	// in its data dir): without it the new node refuses to join.
	Secret string `json:"secret"`
}

// JoinRequest tells an unjoined node to join the cluster at JoinURL.
type JoinRequest struct {
	JoinURL string `json:"join_url"`
	Token   string `json:"token"`
}

// TransferRequest names the node to hand leadership to ("" = best passive).
type TransferRequest struct {
	To string `json:"to"`
}

// TokenRequest asks for a join token; TTL is a Go duration ("1h").
type TokenRequest struct {
	TTL string `json:"ttl"`
}

// Introduction is the file `ha introduction` writes and `ha join` reads.
type Introduction struct {
	JoinURL string `json:"join_url"`
	Token   string `json:"token"`
}

// JoinInfo is what a joining node learns, unauthenticated, from any
// member's API (HAJoinInfo): it checks the CA against the fingerprint in
// its token.
type JoinInfo struct {
	ClusterID  string `json:"cluster_id"`
	CACert     string `json:"ca_cert"`
	LeaderAddr string `json:"leader_addr"`
}
