package fault

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/raftvip/raftvip/consensus"
)

// fault is one injected failure that lasts until healed.
type fault struct {
	name  string
	until time.Time
	heal  func()
}

// nemesis injects faults chosen by its seed, at most two at a time.
type nemesis struct {
	c      *cluster
	rng    *rand.Rand
	h      *history
	active []*fault
	log    []string
	blocks map[[2]int]int // one-way blocks from host a to host b, counted
	down   map[int]bool   // agents killed or frozen by a fault not yet healed
	// An enroll or remove of n4 under way, and where its answer arrives.
	changing bool
	changes  chan memberChange
	// Graceful restarts under way, and where each one's node arrives when
	// it has been started again.
	restarting int
	restarted  chan int
	wg         sync.WaitGroup
}

func (n *nemesis) logf(format string, args ...any) {
	line := fmt.Sprintf("%8.3fs ", time.Duration(n.h.now()).Seconds()) + fmt.Sprintf(format, args...)
	n.log = append(n.log, line)
	n.c.t.Log("nemesis: " + line)
}

// members are the indexes of the nodes in the cluster.
func (n *nemesis) members() []int {
	var out []int
	for i, m := range n.c.member {
		if m {
			out = append(out, i)
		}
	}
	return out
}

// pick returns a member, the active node half the time.
func (n *nemesis) pick() int {
	if n.rng.IntN(2) == 0 {
		if a := n.c.active(); a >= 0 {
			return a
		}
	}
	ms := n.members()
	return ms[n.rng.IntN(len(ms))]
}

func (n *nemesis) block(from, to int) {
	k := [2]int{from, to}
	if n.blocks[k]++; n.blocks[k] == 1 {
		n.c.hosts[from].Block(n.c.hosts[to])
	}
}

func (n *nemesis) unblock(from, to int) {
	k := [2]int{from, to}
	if n.blocks[k]--; n.blocks[k] == 0 {
		n.c.hosts[from].Unblock(n.c.hosts[to])
	}
}

// cut blocks every pair (a in as, b in bs) both ways, or one way.
func (n *nemesis) cut(as, bs []int, oneWay bool) func() {
	for _, a := range as {
		for _, b := range bs {
			n.block(a, b)
			if !oneWay {
				n.block(b, a)
			}
		}
	}
	return func() {
		for _, a := range as {
			for _, b := range bs {
				n.unblock(a, b)
				if !oneWay {
					n.unblock(b, a)
				}
			}
		}
	}
}

func others(all []int, x ...int) []int {
	var out []int
	for _, a := range all {
		keep := true
		for _, b := range x {
			keep = keep && a != b
		}
		if keep {
			out = append(out, a)
		}
	}
	return out
}

func name(i int) string { return fmt.Sprintf("n%d", i+1) }

// inject starts one fault chosen by the seed.
func (n *nemesis) inject() {
	all := []int{0, 1, 2, 3}
	for {
		x := n.pick()
		var f *fault
		d := time.Duration(1000+n.rng.IntN(3000)) * time.Millisecond
		switch k := n.rng.IntN(11); k {
		case 0: // kill -9, restarted when healed
			if n.down[x] {
				continue
			}
			n.down[x] = true
			n.c.agent(x).Kill()
			f = &fault{name: "kill -9 " + name(x), heal: func() { n.c.start(x); n.down[x] = false }}
		case 1: // frozen
			if n.down[x] {
				continue
			}
			n.down[x] = true
			p := n.c.agent(x)
			p.Stop()
			f = &fault{name: "SIGSTOP " + name(x), heal: func() { p.Cont(); n.down[x] = false }}
		case 10: // the active node frozen long enough for the rest to elect
			// a leader and commit writes; it thaws still believing it
			// leads, with reads waiting in its sockets
			x = n.c.active()
			if x < 0 || n.down[x] {
				continue
			}
			n.down[x] = true
			d = time.Duration(1500+n.rng.IntN(2500)) * time.Millisecond
			p := n.c.agent(x)
			p.Stop()
			f = &fault{name: "SIGSTOP active " + name(x), heal: func() { p.Cont(); n.down[x] = false }}
		case 2: // a graceful restart, at once, beside the nemesis: under a
			// slow disk a stop can take minutes, and the other faults must
			// keep their durations meanwhile
			if n.down[x] {
				continue
			}
			n.down[x] = true
			n.restarting++
			n.logf("restart %s (SIGTERM, start) begins", name(x))
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.c.agent(x).Term(10 * time.Second)
				n.c.start(x)
				n.restarted <- x
			}()
			return
		case 3, 4: // x against the rest (x is the active node half the time)
			f = &fault{name: "partition " + name(x) + " | rest", heal: n.cut([]int{x}, others(all, x), false)}
		case 5: // x cannot send to the rest, but hears them
			f = &fault{name: "one-way: " + name(x) + " cannot send to the rest", heal: n.cut([]int{x}, others(all, x), true)}
		case 6: // x is a bridge: the other voters cannot reach each other
			rest := others([]int{0, 1, 2}, x)
			if len(rest) < 2 {
				continue
			}
			f = &fault{name: fmt.Sprintf("bridge %s: %s | %s", name(x), name(rest[0]), name(rest[1])), heal: n.cut(rest[:1], rest[1:2], false)}
		case 7: // slow disk under n3
			n.c.throttle(8)
			f = &fault{name: "slow disk under n3 (8 write IOPS)", heal: func() { n.c.throttle(0) }}
		case 8, 9: // enroll or remove the spare
			n.member4()
			return
		}
		f.until = time.Now().Add(d)
		n.logf("start %s for %v", f.name, d)
		n.active = append(n.active, f)
		return
	}
}

// memberChange is the answer of an enroll or remove of n4, run beside the
// nemesis: a CLI call through the VIP can wait its whole 30 s on a frozen
// node, and the faults must keep their durations meanwhile.
type memberChange struct {
	enroll bool
	out    string
	err    error
}

// member4 starts enrolling n4 or removing it. n4 counts as down until the
// answer is in (no kill or freeze of it meanwhile); apply takes the answer.
func (n *nemesis) member4() {
	if n.down[3] || n.changing {
		return
	}
	n.changing, n.down[3] = true, true
	enroll := !n.c.member[3]
	n.logf("%s n4 begins", map[bool]string{true: "enroll", false: "remove"}[enroll])
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		var ch memberChange
		if enroll {
			ch.out, ch.err = n.c.cli("ha", "enroll", "https://"+n.c.hosts[3].Addr4+":"+apiPort, "--secret-file", filepath.Join(n.c.dirs[3], consensus.BootstrapSecretFile))
		} else {
			ch.out, ch.err = n.c.cli("ha", "remove", "n4")
		}
		ch.enroll = enroll
		n.changes <- ch
	}()
}

// apply takes the answer of an enroll or remove of n4; after a remove n4 is
// wiped and started afresh, ready to be enrolled again.
func (n *nemesis) apply(ch memberChange) {
	n.changing, n.down[3] = false, false
	if ch.enroll {
		n.logf("enroll n4: %v %s", ch.err, strings.TrimSpace(ch.out))
		if ch.err == nil {
			n.c.member[3] = true
		}
		return
	}
	n.logf("remove n4: %v %s", ch.err, strings.TrimSpace(ch.out))
	if ch.err != nil {
		return
	}
	n.c.member[3] = false
	n.c.agent(3).Kill()
	_ = os.RemoveAll(n.c.dirs[3])
	_ = os.MkdirAll(n.c.dirs[3], 0o700)
	n.c.start(3)
}

// tick heals the faults whose time is up and may start a new one.
func (n *nemesis) tick() {
	select {
	case ch := <-n.changes:
		n.apply(ch)
	default:
	}
	for done := false; !done; {
		select {
		case x := <-n.restarted:
			n.restartDone(x)
		default:
			done = true
		}
	}
	now := time.Now()
	kept := n.active[:0]
	for _, f := range n.active {
		if now.After(f.until) {
			n.logf("heal %s", f.name)
			f.heal()
		} else {
			kept = append(kept, f)
		}
	}
	n.active = kept
	if len(n.active) < 2 && n.rng.IntN(3) == 0 {
		n.inject()
	}
}

// healAll ends every fault, then waits for an enroll or remove under way.
func (n *nemesis) healAll() {
	for _, f := range n.active {
		n.logf("heal %s", f.name)
		f.heal()
	}
	n.active = nil
	if n.changing {
		n.apply(<-n.changes)
	}
	for n.restarting > 0 {
		n.restartDone(<-n.restarted)
	}
	n.wg.Wait()
}

// restartDone takes node x back after its graceful restart.
func (n *nemesis) restartDone(x int) {
	n.restarting--
	n.down[x] = false
	n.logf("restart %s: started again", name(x))
}
