// Package netns holds the end-to-end tests of failover: the real raftvip
// binary in networks of Linux network namespaces built by internal/netlab
// (New checks for root and iproute2 first).
//
// A Net is a bridge in a namespace of its own; each Host is a namespace with
// an eth0 (a veth whose other end is on the bridge) holding 198.18.0.X/24
// and 2001:db8::X/64 (benchmarking and documentation ranges, never the
// host's networks). Hosts run processes (Start), lose their link
// (LinkDown), or stop talking to chosen peers (Block, Partition). Every
// namespace and process is removed when the test ends, also when it fails;
// namespaces are named after the test process's PID so that the leftovers of
// a crashed run are removed by the next one while a live run's are kept.
//
// The tests build cmd/raftvip once (RAFTVIP_BINARY runs a prebuilt binary
// instead, to compare builds), and the test binary doubles as a plain HTTP
// service on each node, the user's own service beside raftvip, for the
// kernel fence tests.
//
// # Usage
//
//	n := netns.New(t)          // fails under CI=true without root or iproute2
//	h := n.AddHost("n1", 1)
//	p := h.Start("agent", binary, "agent", ...)
//	p.Kill()
package netns
