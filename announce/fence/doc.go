// Package fence holds the active lease in the kernel, so that a node stops
// receiving VIP traffic when its lease ends even if the agent was killed or
// frozen and nothing is left to act.
//
// New installs an nftables table (family inet, DefaultTable unless told
// otherwise) with two sets per address family, the VIPs and the lease (a set
// whose elements carry a timeout), and one rule on the input hook:
//
//	ip daddr @vips4 ip daddr != @lease4 drop
//	ip6 daddr @vips6 ip6 daddr != @lease6 drop
//
// Hold(until) puts the VIPs into the lease set with the time the lease has
// left (less a margin for the kernel's clock), and a zero until withdraws
// them. An element whose timeout has passed no longer matches, so the kernel
// drops VIP traffic on its own at the end of the last lease it was given:
// new connections and packets of existing ones alike. The agent renews it
// after every quorum round that renews the lease (consensus.Node's
// SetKernelLease), and withdraws it before handing leadership over.
//
// What it does not do: it does not stop ARP or NDP answers (the agent answers
// those itself, so a frozen or dead agent answers none) nor BGP
// announcements (a killed agent's sessions close; a frozen agent's routes
// stay until the router's hold timer ends, and the fence drops the traffic
// they draw meanwhile). It does not guard traffic that a load balancer sends
// to a node's own address (external mode has no VIP on the nodes: there the
// load balancer's health checks of /healthz/active decide). New replaces a
// table of the same name left by an earlier run (after kill -9), starting
// with the lease not held; Close removes it.
//
// Forward, called by a node that has just taken the VIPs over, passes the
// VIP segments of connections it does not know (no SYN, no conntrack entry
// of its own) on to the previous owner for a while, in a table of family ip
// or ip6 named after the fence's with "-handover" (the kernel's dup is not
// available in inet tables); the first Hold after that time, a withdrawal
// and Close remove it.
//
// A renewal deletes the element and adds it again in one transaction,
// which packets see whole: adding an element that is there does not renew
// it (before Linux 6.10 it keeps its timeout; on 6.18 the kernel reports
// the new expiry but drops packets at the old one).
package fence
