package bgp

import (
	"context"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// Flap damping of sessions: a session that goes down soon after it came up
// is held down for a delay that doubles with each such flap (from
// BackoffMin to BackoffMax) before it may reconnect; a session that stays
// up for BackoffReset forgets its flaps.
const (
	BackoffMin   = 2 * time.Second
	BackoffMax   = 2 * time.Minute
	BackoffReset = time.Minute
)

// backoff is the per-peer flap history.
type backoff struct {
	mu    sync.Mutex
	peers map[string]*flapState
}

type flapState struct {
	up    time.Time // when the session was last established
	flaps int
}

// next records a state change of a peer's session at now and returns how
// long to hold it down before it may reconnect (0: no hold).
func (b *backoff) next(addr string, established bool, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.peers == nil {
		b.peers = map[string]*flapState{}
	}
	st := b.peers[addr]
	if st == nil {
		st = &flapState{}
		b.peers[addr] = st
	}
	if established {
		st.up = now
		return 0
	}
	if st.up.IsZero() {
		return 0 // never came up: GoBGP's own connect retry applies
	}
	if now.Sub(st.up) >= BackoffReset {
		st.flaps = 0
	}
	st.up = time.Time{}
	st.flaps++
	if st.flaps == 1 {
		return 0 // one drop is not a flap yet
	}
	d := BackoffMin << (st.flaps - 2)
	if d > BackoffMax || d <= 0 {
		d = BackoffMax
	}
	return d
}

// dampFlaps watches the sessions and holds a flapping peer administratively
// down for its backoff delay, until ctx ends; it returns once its hold-down
// timers have ended too.
func (a *Announcer) dampFlaps(ctx context.Context) {
	var b backoff
	var timers sync.WaitGroup
	defer timers.Wait()
	events := make(chan *api.Peer, 64)
	err := a.srv.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		if p := r.GetPeer(); p != nil && p.Type == api.WatchEventResponse_PeerEvent_STATE {
			select {
			case events <- p.GetPeer():
			default:
			}
		}
	})
	if err != nil {
		a.logger.Warn("cannot watch BGP sessions; flapping sessions are retried without backoff", "err", err)
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-events:
			addr := p.GetConf().GetNeighborAddress()
			state := p.GetState().GetSessionState()
			if p.GetState().GetAdminState() != api.PeerState_UP {
				continue // our own hold-down
			}
			d := b.next(addr, state == api.PeerState_ESTABLISHED, time.Now())
			if d == 0 {
				continue
			}
			a.logger.Warn("BGP session flapped; holding it down before reconnecting", "peer", addr, "for", d)
			if err := a.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: addr, Communication: "raftvip: session flapping, backing off"}); err != nil {
				a.logger.Warn("backing off a flapping session", "peer", addr, "err", err)
				continue
			}
			timers.Add(1)
			go func() {
				defer timers.Done()
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
				if err := a.srv.EnablePeer(ctx, &api.EnablePeerRequest{Address: addr}); err != nil && ctx.Err() == nil {
					a.logger.Warn("re-enabling a session after backoff", "peer", addr, "err", err)
				}
			}()
		}
	}
}
