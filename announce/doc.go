// Package announce defines how a node makes the cluster's virtual IPs
// reach it while it is the active node, and only then.
//
// An Announcer is declarative: the caller says what it wants with Set
// (active or not, in which Raft term) and the Announcer does whatever its
// mechanism needs (add an address, answer ARP, send gratuitous ARP, announce
// a BGP route). Implementations live in sub-packages: announce/arp for flat
// layer-2 networks, announce/bgp for routed ones; announce/fence holds the
// lease in the kernel beside either of them (nftables), so that a killed or
// frozen agent's node stops taking VIP traffic when its lease ends. The package never imports consensus/: an Announcer is
// handed a function that says, at any instant, whether the node is still
// active, and it checks it before every answer it gives, so that a node whose
// lease has lapsed answers nothing even before Set(passive) reaches it.
// Desired.Drain asks for the make-before-break half of a deliberate
// hand-over: claim nothing more, keep accepting what still comes until then.
//
// # Usage
//
//	a, err := arp.New(arp.Config{Interface: "eth0", VIPs: vips, Active: node.IsActive})
//	ch, cancel := node.Subscribe()
//	for s := range ch {
//		a.Set(ctx, announce.Desired{Active: s.Active, Term: s.Term, Drain: s.Drain})
//	}
//	a.Close() // releases the VIPs
package announce
