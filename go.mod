module github.com/raftvip/raftvip

go 1.26

require (
	github.com/evanphx/json-patch/v5 v5.9.11
	go.etcd.io/bbolt v1.4.3
)

require golang.org/x/sys v0.29.0 // indirect
