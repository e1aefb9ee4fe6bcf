package healthz

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// AgentLine is what the HAProxy agent check hears from a node in status s:
// "up ready W%" on the active node (HAProxy marks it up, ready, with weight
// W), "drain" while it hands over (no new sessions, existing ones finish),
// and "down#<reason>" elsewhere.
func AgentLine(s Status, weight int) string {
	switch {
	case s.Active && s.Draining:
		return "drain\n"
	case s.Active:
		return fmt.Sprintf("up ready %d%%\n", weight)
	case s.Draining:
		return "drain\n"
	case !s.InCluster:
		return "down#not in a cluster\n"
	}
	return "down#" + s.Role + "\n"
}

// ServeAgent answers HAProxy agent checks on ln until ln is closed: one line
// per connection (AgentLine), then the connection is closed. weight is the
// percentage announced on the active node (1 to 256).
func ServeAgent(ln net.Listener, src Source, weight int) error {
	if weight < 1 || weight > 256 {
		return fmt.Errorf("agent weight %d must be between 1 and 256", weight)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte(AgentLine(src.Health(), weight)))
		c.Close()
	}
}
