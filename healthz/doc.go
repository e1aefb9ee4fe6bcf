// Package healthz answers load balancers and orchestrators: which node is
// active, which passive nodes are caught up, whether a node is ready or
// merely alive, in HTTP (GET and HEAD) and in HAProxy's agent-check
// protocol, and the node's metrics in Prometheus format.
//
// Every answer comes from memory (a Source's Health), never from a Raft
// round-trip, so it is cheap enough to poll every 100 ms from several load
// balancers, and right under partition: a node whose lease lapsed answers
// 503 on /healthz/active at once. The package never imports consensus/: it
// is handed a Source.
//
// # Endpoints
//
//	/healthz/active   200 only on the active node (leader with a fresh lease, not draining)
//	/healthz/passive  200 on a passive node with a leader, within the allowed lag
//	/healthz/ready    200 on a member of a cluster that has a leader, caught up
//	/healthz/live     200 while the process runs
//
// Each answers a small JSON body (node, role, term, leader, indexes, lag,
// lease). The agent-check port answers one line: "up ready 100%" on the
// active node, "drain" while it hands over, "down#passive" elsewhere.
//
// # Usage
//
//	h := healthz.New(src, healthz.Options{})
//	mux.Handle("/healthz/", h)
//	go healthz.ServeAgent(ln, src, 100)
package healthz
