package api

import (
	"context"
	"net/http"
	"time"

	"github.com/raftvip/raftvip/consensus"
	"github.com/raftvip/raftvip/store"
)

// Node is what the API needs of its consensus node (*consensus.Node is
// one). It is defined here, by its consumer, so that the handlers can be
// tested with a small fake; its parts say what each group of endpoints
// uses.
type Node interface {
	ReadNode
	WriteNode
	HANode
	FileNode
}

// ReadNode serves reads and says where a request must go.
type ReadNode interface {
	ID() string
	Store() *store.Store
	ReadBarrier(ctx context.Context) error
	IsActive() bool
	Leader(ctx context.Context) (id, addr string, err error)
	HAState() consensus.HAState
	Timing() consensus.Timing
	Status() consensus.NodeStatus
	FullStatus() consensus.NodeStatus
	BootstrapSecret() string
}

// WriteNode proposes writes.
type WriteNode interface {
	Apply(ctx context.Context, cmd *store.Command) (store.Result, error)
}

// HANode is the HA administration the /ha endpoints reach.
type HANode interface {
	Init(ctx context.Context, opts consensus.InitOptions) error
	Join(ctx context.Context, joinURL, token string) error
	JoinInfo(ctx context.Context) (*consensus.JoinInfo, error)
	Token(ttl time.Duration) (string, error)
	Members() ([]store.Member, error)
	Remove(ctx context.Context, target string) error
	Transfer(ctx context.Context, target string) (string, error)
	ClusterStatus(ctx context.Context) (*consensus.ClusterStatus, error)
	FailoverSafe(ctx context.Context, wait time.Duration) (bool, string, error)
	Snapshot() (time.Duration, error)
	RotateClusterCerts(ctx context.Context) ([]consensus.CertInfo, error)
}

// FileNode copies file blobs between members.
type FileNode interface {
	FanoutBlob(u *store.Upload, size int64) (*consensus.BlobFanout, error)
	ReplicateBlob(ctx context.Context, sha string, size int64) error
	FetchBlob(ctx context.Context, sha string) error
	StreamClient() (*http.Client, error)
}

var _ Node = (*consensus.Node)(nil)
