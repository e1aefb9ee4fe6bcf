package announce

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// HostPrefix returns the VIP as a host prefix (/32 or /128).
func HostPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr().Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}

// Hold adds (or removes) the VIPs as host addresses on the link named
// holder ("lo" or a dummy), so that the kernel accepts traffic for them.
// Adding is idempotent; removing an absent address is not an error.
func Hold(holder string, vips []netip.Prefix, add bool) error {
	link, err := netlink.LinkByName(holder)
	if err != nil {
		return fmt.Errorf("finding %s: %w", holder, err)
	}
	var errs []error
	for _, v := range vips {
		p := HostPrefix(v)
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if add {
			if p.Addr().Is6() {
				addr.Flags = 0x02 // IFA_F_NODAD
			}
			if err := netlink.AddrReplace(link, addr); err != nil {
				errs = append(errs, fmt.Errorf("adding VIP %s to %s: %w", p, holder, err))
			}
		} else if err := netlink.AddrDel(link, addr); err != nil && !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "cannot assign") {
			errs = append(errs, fmt.Errorf("removing VIP %s from %s: %w", p, holder, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveStale deletes the VIPs from every interface of the host: what an
// interrupted stop left behind.
func RemoveStale(vips []netip.Prefix, logger *slog.Logger) {
	want := make([]netip.Addr, len(vips))
	for i, v := range vips {
		want[i] = v.Addr().Unmap()
	}
	links, err := netlink.LinkList()
	if err != nil {
		logger.Warn("listing interfaces to clean stale VIPs", "err", err)
		return
	}
	for _, l := range links {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			ip, _ := netip.AddrFromSlice(ad.IP)
			if slices.Contains(want, ip.Unmap()) {
				if err := netlink.AddrDel(l, &ad); err == nil {
					logger.Warn("removed a VIP left from an earlier run", "vip", ip, "link", l.Attrs().Name)
				}
			}
		}
	}
}
