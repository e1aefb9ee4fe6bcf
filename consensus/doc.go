// Package consensus owns Raft for raftvip: the mutually authenticated
// transport, the log, stable and snapshot stores, bootstrap, join, removal and
// leadership transfer, the per-node ha-state.json, and the active signal.
//
// A node is active when it is the Raft leader, has applied everything earlier
// terms committed, is not an observer, is not handing leadership over, and
// its lease is fresh. The lease runs from the start of the last round in which
// a quorum confirmed its leadership and is shorter, by a margin, than the
// followers' heartbeat timeout: no follower can start an election while the
// lease runs, so no two nodes are ever active at once (DESIGN.md, invariant 1).
//
// SetKernelLease gives the node a copy of its lease outside the process (the
// nftables fence of announce/fence): every renewal is put into it after the
// quorum round that confirmed it, and it is withdrawn when leadership is
// lost and when the node closes, so that the kernel never holds a lease the
// node has let go. A deliberate hand-over (Transfer, a readiness hand-over)
// is make-before-break: the leader renews its lease with one more quorum
// round and then drains until that lease ends (Active.Drain, DrainUntil):
// not active, but the kernel copy and the announcers keep accepting what
// still reaches the node while the successor takes over. SetReadiness tells the
// node whether its announcer can do its job; a leader that is not ready hands
// leadership to a ready voter, when one exists, instead of becoming or
// staying active, and its status says why.
//
// # Usage
//
//	n, err := consensus.New(consensus.Config{DataDir: dir, NodeID: "a", ConsensusAddr: "198.18.0.1:7000", APIURL: "http://198.18.0.1:8080"})
//	n.SetRPCHandler(apiHandler)        // member HTTP on the consensus port
//	err = n.Init(ctx, consensus.InitOptions{})            // first node
//	tok, _ := n.Token(time.Hour)                          // on a member
//	err = other.Join(ctx, "https://198.18.0.1:8092", tok) // on a new node
//	ch, cancel := n.Subscribe()                           // Active changes
//	n.SetKernelLease(fence)                               // the lease in the kernel too
//	n.SetReadiness(func() string { return "" })           // the announcer can work
//	res, err := n.Apply(ctx, &store.Command{...})         // on the leader
//
// All consensus traffic (Raft, forwarded requests, status) is TLS 1.3 with
// certificates from the cluster's own ed25519 CA on both sides. A node without
// one may only use the join stream, where it trades a single-use join token
// for its certificate (and nothing else); once in the Raft configuration it
// fetches the CA key and the API token from a member (/internal/secrets).
// Every member renews its own member and API certificates with that CA key
// (certs.go: when a third of their lifetime is left, or on RotateCerts /
// RotateClusterCerts); listeners and clients read the current certificate
// at each handshake. The API's certificate (APICertificate) is the
// cluster CA's once the node is in a cluster, and before that a
// self-signed one whose fingerprint the bootstrap secret carries
// (BootstrapPin); APITrust is how clients verify either.
// The transport declines hashicorp/raft's heartbeat fast path (issue #695),
// and every node keeps a chained hash of its applied state so that
// divergence shows in ClusterStatus.
//
// Files' contents (blobs, by SHA-256) do not go through the Raft log. An
// upload is stored on the active node while as many other voters as a quorum
// needs read it from the active node's file as it grows (FanoutBlob); the
// small file record is committed once a quorum holds the verified blob, and
// the other voters get their copies right after. A node that lacks committed
// blobs fetches them in the background, resuming interrupted copies with an
// HTTP range, and a new leader fetches what it lacks before it may become
// active.
//
// Errors from hashicorp/raft are translated to this package's sentinels.
//
// # Files
//
//	node.go       the Node, its lifecycle (New, start, Close and its shutdown order), Apply, reads
//	lease.go      the lease and the active signal (runLeadership, IsActive, Subscribe)
//	enrol.go      Init, enrolment (the join stream, Join, add-voter), removal, join tokens
//	transfer.go   leadership transfer and choosing a successor
//	rpc.go        the member RPC surface on the consensus port: /internal/*, forwarded
//	              API requests, the membership gate, the one error shape (client.ErrorBody)
//	status.go     NodeStatus, ClusterStatus, state-hash comparison, failover-safe
//	blobs.go      file blobs between members (quorum copies, fan-out, fetches)
//	certs.go      certificate renewal and rotation, the API's certificates, APITrust
//	tls.go        the cluster CA, member certificates, join tokens, consistency at start
//	readiness.go  readiness hand-over;  fence.go  the kernel lease;  mux.go  the port's streams
//	datadir.go, hastate.go, storage.go, config.go, fsm.go: the data dir, ha-state.json,
//	              local-storage check, configuration, the raft.FSM adapter
package consensus
