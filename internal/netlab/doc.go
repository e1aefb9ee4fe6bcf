// Package netlab builds networks in Linux network namespaces and runs
// processes in them: the test networks of test/netns and test/fault, and
// the network of 'raftvip demo --netns'. It does not import testing, so
// the production binary does not link the test framework.
//
// A Net is a bridge in a namespace of its own; each Host is a namespace with
// an eth0 (a veth whose other end is on the bridge) holding 198.18.0.X/24
// and 2001:db8::X/64 (benchmarking and documentation ranges, never the
// host's networks). Hosts run processes (Start), lose their link
// (LinkDown), or stop talking to chosen peers (Block, Partition). Every
// namespace and process is removed by the T's clean-up; namespaces are
// named after the creating process's PID so that the leftovers of a
// crashed run are removed by the next one while a live run's are kept.
//
// # Usage
//
//	n := netlab.Build(t)       // t: a testing.TB, or a program's own T
//	h := n.AddHost("n1", 1)
//	p := h.Start("agent", binary, "agent", ...)
//	p.Kill()
package netlab
