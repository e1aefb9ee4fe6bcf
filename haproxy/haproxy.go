package haproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/raftvip/raftvip/healthz"
)

// Server is one cluster member.
type Server struct {
	Name string // member ID
	Addr string // host:port of its API
	// TLS says the member's API is HTTPS (the default): HAProxy then
	// connects with TLS and verifies the certificate against CAFile.
	TLS bool
}

// Config describes the generated configuration.
type Config struct {
	// Bind is the frontend's address, host:port ("198.18.0.100:80", ":8080").
	Bind    string
	Servers []Server
	// CheckPort, if set, is the port of the plain-HTTP health listener
	// (agent --health-addr); otherwise checks go to the API port.
	CheckPort int
	// AgentPort, if set, adds HAProxy agent checks on that port (agent
	// --agent-check-addr).
	AgentPort int
	// Inter is the check interval (default 100ms); Rise and Fall the
	// consecutive answers that mark a server up or down (default 1 and 2).
	Inter      time.Duration
	Rise, Fall int
	// CAFile is the PEM file HAProxy verifies the members' API
	// certificates with (the cluster CA, tls/ca.crt, copied where HAProxy
	// can read it); required when a server has TLS. VerifyHost is the
	// name the certificates must carry (default consensus.APIServerName's
	// "raftvip-api", which every cluster-issued API certificate has).
	CAFile     string
	VerifyHost string
}

// Defaults used for zero fields.
const (
	DefaultInter = 100 * time.Millisecond
	DefaultRise  = 1
	DefaultFall  = 2
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if c.Inter == 0 {
		c.Inter = DefaultInter
	}
	if c.Rise == 0 {
		c.Rise = DefaultRise
	}
	if c.Fall == 0 {
		c.Fall = DefaultFall
	}
	if _, port, err := net.SplitHostPort(c.Bind); err != nil || port == "" {
		return fmt.Errorf("bind address %q must be host:port or :port", c.Bind)
	}
	if len(c.Servers) == 0 {
		return errors.New("no servers: the cluster has no members")
	}
	if c.VerifyHost == "" {
		c.VerifyHost = "raftvip-api"
	}
	for _, s := range c.Servers {
		if s.TLS && c.CAFile == "" {
			return fmt.Errorf("server %s serves HTTPS: a CA file to verify it with is required (the cluster's tls/ca.crt)", s.Name)
		}
	}
	if strings.ContainsAny(c.CAFile, " \t\n\"'#") || !nameRE.MatchString(c.VerifyHost) {
		return fmt.Errorf("CA file %q and verify host %q must have no spaces, quotes or '#'", c.CAFile, c.VerifyHost)
	}
	for _, s := range c.Servers {
		if !nameRE.MatchString(s.Name) {
			return fmt.Errorf("server name %q is not usable in HAProxy", s.Name)
		}
		if _, port, err := net.SplitHostPort(s.Addr); err != nil || port == "" {
			return fmt.Errorf("server %s address %q must be host:port", s.Name, s.Addr)
		}
	}
	switch {
	case c.Inter < 10*time.Millisecond:
		return fmt.Errorf("check interval %v is below 10ms", c.Inter)
	case c.Rise < 1 || c.Fall < 1:
		return errors.New("rise and fall must be at least 1")
	case c.CheckPort < 0 || c.CheckPort > 65535 || c.AgentPort < 0 || c.AgentPort > 65535:
		return errors.New("ports must be between 1 and 65535")
	}
	return nil
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }

var tmpl = template.Must(template.New("haproxy").Funcs(template.FuncMap{"ms": ms}).Parse(`# HAProxy configuration for a raftvip cluster, written by 'raftvip haproxy config'.
# Traffic goes to the one member whose {{.CheckPath}} answers 200: the active
# node. A member that stops answering 200 is marked down after {{.Fall}} checks
# {{ms .Inter}} apart and its sessions are shut; the new active node is marked up
# after {{.Rise}}.{{if .CAFile}} HTTPS members are verified against {{.CAFile}}.{{end}}
global
    maxconn 4096

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 500ms
    retries 3
    option redispatch 1

frontend raftvip
    bind {{.Bind}}
    default_backend raftvip_active

backend raftvip_active
    option httpchk
    http-check send meth GET uri {{.CheckPath}}
    http-check expect status 200
    default-server inter {{ms .Inter}} fastinter {{ms .Inter}} downinter {{ms .Inter}} rise {{.Rise}} fall {{.Fall}} on-marked-down shutdown-sessions
{{- range .Servers}}
    server {{.Name}} {{.Addr}}{{if .TLS}} ssl verify required ca-file {{$.CAFile}} verifyhost {{$.VerifyHost}} sni str({{$.VerifyHost}}){{end}} check{{if $.CheckPort}} port {{$.CheckPort}}{{if .TLS}} no-check-ssl{{end}}{{end}}{{if $.AgentPort}} agent-check agent-port {{$.AgentPort}} agent-inter {{ms $.Inter}}{{end}}
{{- end}}
`))

// Write validates cfg and writes the configuration to w.
func Write(w io.Writer, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, struct {
		Config
		CheckPath string
	}{cfg, healthz.PathActive}); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}
