// Package haproxy writes HAProxy configuration for a raftvip cluster: a
// frontend on the VIP (or any address) and a backend with every member,
// checked on /healthz/active so that HAProxy sends traffic to the active
// node alone, with fast check timings, shutdown of sessions on a server
// marked down, and, when the nodes answer them, HAProxy agent checks.
//
// # Usage
//
//	cfg := haproxy.Config{Bind: "198.18.0.100:80", Servers: []haproxy.Server{{Name: "n1", Addr: "198.18.0.1:8092"}}}
//	err := haproxy.Write(os.Stdout, cfg)
//
// 'raftvip haproxy config' fills Servers from the live membership. The
// output is accepted as it is by HAProxy 2.6 ('haproxy -c -f FILE').
package haproxy
