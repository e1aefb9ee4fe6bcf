package consensus

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// ReadinessFunc says whether this node's announcer can do its job right
// now: "" when it can, otherwise why not, in plain words ("no BGP session
// established", "eth0 is down"). It must be cheap and must not block.
type ReadinessFunc func() string

// SetReadiness gives the node its announcer's readiness. A leader that is
// not ready hands leadership to a ready voter, when one exists, instead of
// becoming or staying active; with no ready voter it stays (an unready
// active node is better than none).
// With Config.AwaitReadiness the node is not ready until the first call
// (nil then means always ready).
func (n *Node) SetReadiness(f ReadinessFunc) {
	n.mu.Lock()
	n.readiness, n.readinessSet = f, true
	n.mu.Unlock()
}

// notReady returns why this node is not ready, "" when it is.
func (n *Node) notReady() string {
	n.mu.Lock()
	f, set := n.readiness, n.readinessSet
	n.mu.Unlock()
	why := ""
	if !set && n.cfg.AwaitReadiness {
		why = "the announcer is starting"
	}
	if f != nil {
		why = f()
	}
	if fs := n.fenceStatus(); fs != nil && fs.Error != "" {
		if why != "" {
			why += "; "
		}
		why += "kernel fence: " + fs.Error
	}
	return why
}

// readinessPeriod is how often a leader checks its own readiness.
const readinessPeriod = 500 * time.Millisecond

// runReadiness hands leadership to a ready voter while this node leads and
// is not ready. It records each hand-over and each refusal once.
func (n *Node) runReadiness(r *raft.Raft) {
	defer n.wg.Done()
	tick := time.NewTicker(readinessPeriod)
	defer tick.Stop()
	lastWhy := ""
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
		if r.State() != raft.Leader || n.cfg.Observer {
			lastWhy = ""
			continue
		}
		why := n.notReady()
		if why == "" {
			if lastWhy != "" {
				n.logger.Info("ready again", "was", lastWhy)
			}
			lastWhy = ""
			continue
		}
		n.handToReady(why, why != lastWhy)
		lastWhy = why
	}
}

// handToReady transfers leadership to a ready voter because this node is
// not ready (why). It reports whether it did.
func (n *Node) handToReady(why string, logRefusal bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	to, err := n.transfer(ctx, "", true)
	if err != nil {
		if logRefusal {
			n.logger.Warn("not ready, and no ready voter to hand over to: staying", "why", why, "err", err)
		}
		return false
	}
	n.logger.Warn("not ready: handed leadership to a ready node", "why", why, "to", to)
	n.mu.Lock()
	n.lastHandOver = HandOver{At: time.Now(), To: to, Why: why}
	n.mu.Unlock()
	return true
}

// HandOver is the last time this node gave leadership away because it was
// not ready.
type HandOver struct {
	At  time.Time `json:"at"`
	To  string    `json:"to"`
	Why string    `json:"why"`
}
