package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/haproxy"
	"github.com/raftvip/raftvip/store"
)

func newHAProxyCmd() *cobra.Command {
	o := &clientOptions{}
	hp := &cobra.Command{
		Use:   "haproxy",
		Short: "Put HAProxy in front of the cluster",
	}
	o.register(hp)
	var cfg haproxy.Config
	var output string
	config := &cobra.Command{
		Use:   "config",
		Short: "Write an HAProxy configuration for the live membership",
		Long: `Write an HAProxy configuration whose backend holds every member of the cluster,
checked on /healthz/active so that traffic goes to the active node alone.
Checked with 'haproxy -c -f FILE' before use; regenerate it after enrolling or
removing nodes.`,
		Args: cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, _ []string) error {
			if cfg.Bind == "" {
				return fmt.Errorf("--bind is required: the address HAProxy listens on, such as 198.18.0.100:80")
			}
			var ms []store.Member
			if _, err := c.Do(ctx, "GET", route.HAMembers, nil, &ms); err != nil {
				return err
			}
			cfg.Servers = nil
			for _, m := range ms {
				u, err := url.Parse(m.APIURL)
				if err != nil || u.Host == "" {
					return fmt.Errorf("member %s has no usable API URL (%q)", m.ID, m.APIURL)
				}
				cfg.Servers = append(cfg.Servers, haproxy.Server{Name: m.ID, Addr: u.Host, TLS: u.Scheme == "https"})
			}
			if cfg.CAFile == "" {
				cfg.CAFile = o.caFile
			}
			if cfg.CAFile == "" && o.dataDir != "" {
				if p, err := filepath.Abs(filepath.Join(o.dataDir, "tls", "ca.crt")); err == nil {
					if _, err := os.Stat(p); err == nil {
						cfg.CAFile = p
					}
				}
			}
			var b bytes.Buffer
			if err := haproxy.Write(&b, cfg); err != nil {
				return err
			}
			if output == "" || output == "-" {
				_, err := cmd.OutOrStdout().Write(b.Bytes())
				return err
			}
			return os.WriteFile(output, b.Bytes(), 0o644)
		}),
	}
	f := config.Flags()
	f.StringVar(&cfg.Bind, "bind", "", "address HAProxy's frontend listens on (host:port)")
	f.IntVar(&cfg.CheckPort, "check-port", 0, "port of the nodes' plain-HTTP health listener (agent --health-addr); default: the API port")
	f.IntVar(&cfg.AgentPort, "agent-port", 0, "port of the nodes' agent check (agent --agent-check-addr); default: no agent check")
	f.DurationVar(&cfg.Inter, "inter", haproxy.DefaultInter, "check interval")
	f.IntVar(&cfg.Rise, "rise", haproxy.DefaultRise, "consecutive good checks that mark a server up")
	f.IntVar(&cfg.Fall, "fall", haproxy.DefaultFall, "consecutive bad checks that mark a server down")
	f.StringVarP(&output, "output", "o", "", "write to this file instead of standard output")
	f.StringVar(&cfg.CAFile, "ca-file", "", "CA file HAProxy verifies the members' HTTPS with (default: --ca, else --data-dir's tls/ca.crt; copy it where HAProxy can read it)")
	f.StringVar(&cfg.VerifyHost, "verify-host", "", "name the members' API certificates must carry (default raftvip-api, in every certificate the cluster issues; give yours with --api-cert)")
	hp.AddCommand(config)
	return hp
}
