// Package bgp is the announcer for routed networks: an embedded GoBGP v3
// speaker that announces the VIPs as host routes (/32, /128) to the routers
// while the node is active, and withdraws them (or, in standby mode,
// announces them with a strictly worse preference) otherwise.
//
// Every announcement is fenced by the Raft term in which it was made: its
// MED is MaxMED minus the term (the cluster's nodes share one ASN, so
// routers compare their MEDs), its LOCAL_PREF (for iBGP) is 100 plus the
// term, and a large community ASN:1:term says which term it is. A router
// therefore prefers the newest leader's path the moment it arrives, even
// while a dead leader's session, and its path, have not yet timed out.
//
// The node holds the VIPs on lo (or a dummy) only while it announces them
// as active, so routed traffic is accepted by the active node alone; on
// release it withdraws first and lets go of the address after.
//
// # Usage
//
//	a, err := bgp.New(ctx, bgp.Config{ASN: 65001, RouterID: "198.18.0.1",
//		Peers: []bgp.Peer{{Address: "198.18.0.20", ASN: 65000}},
//		VIPs: vips, Active: node.IsActive})
//	err = a.Set(ctx, announce.Desired{Active: true, Term: 7})
//	defer a.Close() // withdraws and closes the sessions
package bgp
