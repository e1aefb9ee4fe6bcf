package client

import (
	"net/url"
	"strings"
)

// The API's routes. api/ serves them; everything else that names one uses
// these (a path literal elsewhere is a bug waiting for a rename).
const (
	Prefix = "/api/v1"

	Objects = Prefix + "/objects" // + "/{kind}" and "/{kind}/{key}": see Object, Kind
	Files   = Prefix + "/files"   // + "/{ns}" and "/{ns}/{path...}": see File, Namespace
	Jobs    = Prefix + "/jobs"    // + "/{id}/log": see JobLog
	Tokens  = Prefix + "/tokens"  // + "/{name}": see Token

	HAStatus       = Prefix + "/ha/status"
	HANode         = Prefix + "/ha/node"
	HAState        = Prefix + "/ha/state"
	HAMembers      = Prefix + "/ha/members" // GET the members, POST to enroll; + "/{id}": see Member
	HAFailoverSafe = Prefix + "/ha/failover-safe"
	HAInit         = Prefix + "/ha/init"
	HAJoin         = Prefix + "/ha/join"
	HAJoinInfo     = Prefix + "/ha/join-info"
	HAToken        = Prefix + "/ha/token"
	HATransfer     = Prefix + "/ha/transfer"
	HASnapshot     = Prefix + "/ha/snapshot"
	HARotateCerts  = Prefix + "/ha/rotate-certs"
)

// Kind is the route of one kind of objects.
func Kind(kind string) string { return Objects + "/" + url.PathEscape(kind) }

// Object is the route of one object.
func Object(kind, key string) string { return Kind(kind) + "/" + url.PathEscape(key) }

// Namespace is the route of one namespace of files (files, isos, bundles,
// plugins).
func Namespace(ns string) string { return Files + "/" + url.PathEscape(ns) }

// File is the route of one file; p's "/" separate segments, each escaped.
func File(ns, p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return Namespace(ns) + "/" + strings.Join(segs, "/")
}

// JobLog is the route of a job's log.
func JobLog(id string) string { return Jobs + "/" + url.PathEscape(id) + "/log" }

// Member is the route of one member (by ID or consensus address).
func Member(id string) string { return HAMembers + "/" + url.PathEscape(id) }

// Token is the route of one named token.
func Token(name string) string { return Tokens + "/" + url.PathEscape(name) }

// WithQuery adds a query to a route ("" adds nothing).
func WithQuery(route string, q url.Values) string {
	if len(q) == 0 {
		return route
	}
	return route + "?" + q.Encode()
}
