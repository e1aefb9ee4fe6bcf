package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Stream kinds on the consensus port. Every connection is TLS 1.3; after the
// handshake the client writes one byte naming the stream.
const (
	streamRaft byte = 'R' // Raft RPCs; member certificate required
	streamRPC  byte = 'H' // member HTTP (forwarded writes, status); member certificate required
	streamJoin byte = 'J' // join requests from a node holding a join token; no certificate yet
)

const handshakeTimeout = 5 * time.Second

// mux accepts TLS connections on the consensus port and hands each to the
// listener of its stream kind.
type mux struct {
	ln     net.Listener
	conf   *tls.Config
	logger *slog.Logger
	subs   map[byte]*subListener
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newMux(ln net.Listener, conf *tls.Config, logger *slog.Logger) *mux {
	m := &mux{ln: ln, conf: conf, logger: logger, subs: map[byte]*subListener{}, done: make(chan struct{})}
	for _, k := range []byte{streamRaft, streamRPC, streamJoin} {
		m.subs[k] = &subListener{ch: make(chan net.Conn, 16), done: m.done, closed: make(chan struct{}), addr: ln.Addr()}
	}
	return m
}

func (m *mux) serve() {
	m.wg.Add(1)
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.logger.Error("consensus listener failed", "err", err)
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(c)
		}()
	}
}

func (m *mux) route(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Server(c, m.conf)
	if err := tc.Handshake(); err != nil {
		m.logger.Debug("refused consensus connection", "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	var kind [1]byte
	if _, err := io.ReadFull(tc, kind[:]); err != nil {
		tc.Close()
		return
	}
	sub, ok := m.subs[kind[0]]
	if !ok {
		m.logger.Warn("unknown consensus stream", "remote", c.RemoteAddr(), "kind", kind[0])
		tc.Close()
		return
	}
	if kind[0] != streamJoin && len(tc.ConnectionState().VerifiedChains) == 0 {
		m.logger.Warn("refused consensus connection without a member certificate", "remote", c.RemoteAddr())
		tc.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	select {
	case sub.ch <- tc:
	case <-m.done:
		tc.Close()
	case <-sub.closed:
		tc.Close()
	}
}

func (m *mux) close() {
	m.once.Do(func() {
		close(m.done)
		m.ln.Close()
	})
	m.wg.Wait()
}

// subListener is the listener of one stream kind. Closing it stops its
// Accept (so that http.Server.Close and the Raft transport can return); the
// mux owns the socket itself.
type subListener struct {
	ch     chan net.Conn
	done   chan struct{} // the mux's
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.ch:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; safe to call twice.
func (s *subListener) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

func (s *subListener) Addr() net.Addr { return s.addr }

// dialStream opens a TLS connection to a member's consensus port and names
// the stream.
func dialStream(ctx context.Context, addr string, conf *tls.Config, kind byte) (net.Conn, error) {
	d := tls.Dialer{Config: conf, NetDialer: &net.Dialer{Timeout: handshakeTimeout}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// streamLayer is raft.StreamLayer over the mux's Raft stream.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	conf      *tls.Config
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return dialStream(ctx, string(address), s.conf, streamRaft)
}

// noFastPathTransport wraps NetworkTransport and declines the heartbeat
// fast path, so heartbeats are handled by Raft's main loop. This keeps
// raftvip clear of hashicorp/raft issue #695, where a fast-path heartbeat
// after a partition heals flips a node to follower without synchronising
// with the main loop and nodes can commit different data. Embedding keeps
// the optional interfaces (WithClose, WithPreVote, WithPeers).
type noFastPathTransport struct {
	*raft.NetworkTransport
}

// SetHeartbeatHandler does nothing: see the type's comment.
func (noFastPathTransport) SetHeartbeatHandler(func(raft.RPC)) {}

func tcpAddr(s string) (net.Addr, error) {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		return nil, fmt.Errorf("consensus address %q: %w", s, err)
	}
	return a, nil
}
