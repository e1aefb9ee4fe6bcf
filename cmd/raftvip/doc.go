// Command raftvip is the one binary of raftvip: the agent that runs a node,
// the 'ha' commands that form, grow, shrink and inspect a cluster (named as
// in Digital Rebar Provision's 'drpcli system ha'), the 'objects' commands
// that read and write replicated data, and 'demo', which runs a three-node
// cluster on this machine.
//
// # Usage
//
//	raftvip agent --data-dir /var/lib/raftvip --consensus-addr 198.18.0.1:8093 \
//	    --api-addr 198.18.0.1:8092 --bootstrap
//	raftvip ha enroll -E https://198.18.0.1:8092 --secret-file b.secret https://198.18.0.2:8092
//	raftvip ha status -E https://198.18.0.1:8092
//	raftvip ha rotate-certs
//	raftvip objects put machine m1 '{"name":"m1"}'
//	raftvip demo
//
// Client commands find the API token in RAFTVIP_API_TOKEN, in the file named
// by --api-token-file, or in the Token field of --data-dir's ha-state.json;
// never on the command line, where every user could read it in /proc. The
// agent takes a join token from RAFTVIP_TOKEN or --token-file alike. They
// verify the API's certificate against --ca or the cluster CA in
// --data-dir's tls/ca.crt (and an unjoined node's against the fingerprint
// its bootstrap secret carries).
package main
