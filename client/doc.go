// Package client names the raftvip API's routes for Go code outside api/:
// the CLI, the join in consensus/, the tests and the fault suite use these
// constants and builders (Object, File, JobLog, Member, Token) instead of
// path literals. It imports nothing of raftvip's, so that any package may
// use it.
package client
