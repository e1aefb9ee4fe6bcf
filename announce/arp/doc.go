// Package arp is the announcer for flat layer-2 networks: while the node is
// active it holds the VIPs on the host, answers ARP (IPv4, RFC 826) and
// neighbour solicitations (IPv6, RFC 4861) for them from the process, and
// sends gratuitous ARP / unsolicited neighbour advertisements on every
// takeover and periodically after.
//
// The VIPs are added to the loopback interface and the kernel is told not
// to answer ARP for them on VirtInterface (arp_ignore=1, arp_announce=2), so
// the only answers clients get come from a live process whose lease is fresh:
// a node that is killed, frozen or cut off answers nothing, and a new active
// node's gratuitous ARP moves every client at once. The sysctls get their
// old values back on Close.
//
// # Usage
//
//	a, err := arp.New(arp.Config{Interface: "eth0", VIPs: []netip.Prefix{vip}, Active: node.IsActive})
//	err = a.Set(ctx, announce.Desired{Active: true, Term: 7})
//	defer a.Close()
//
// With Config.Script (Digital Rebar's VirtInterfaceScript) the script adds
// and removes the address instead; the kernel then answers for it, and the
// process-answered fencing is given up.
//
// New opens raw ARP and NDP sockets on the interface; NewWith takes any
// ARPConn / NDPConn (what *mdlayher/arp.Client and *mdlayher/ndp.Conn
// offer) and a Hold function instead, which is how the unit tests drive
// the announcer with fakes and testing/synctest's clock.
package arp
