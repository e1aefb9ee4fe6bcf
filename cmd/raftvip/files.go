package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftvip/raftvip/api"
	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/store"
)

// progress reports a transfer on a terminal (rate and ETA), and nothing
// when standard error is not a terminal.
type progress struct {
	r       io.Reader
	total   int64
	done    int64
	start   time.Time
	last    time.Time
	label   string
	out     *os.File
	enabled bool
}

func newProgress(r io.Reader, total int64, label string) *progress {
	st, err := os.Stderr.Stat()
	return &progress{r: r, total: total, label: label, out: os.Stderr, start: time.Now(),
		enabled: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.enabled && (time.Since(p.last) > 200*time.Millisecond || err == io.EOF) {
		p.last = time.Now()
		el := time.Since(p.start).Seconds()
		rate := float64(p.done) / max(el, 0.001)
		line := fmt.Sprintf("\r%s: %s", p.label, human(p.done))
		if p.total > 0 {
			eta := time.Duration(float64(p.total-p.done)/max(rate, 1)) * time.Second
			line += fmt.Sprintf(" of %s (%.0f%%), %s/s, ETA %v   ", human(p.total), 100*float64(p.done)/float64(p.total), human(int64(rate)), eta.Round(time.Second))
		}
		fmt.Fprint(p.out, line)
	}
	return n, err
}

func (p *progress) finish() {
	if p.enabled {
		fmt.Fprintln(p.out)
	}
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// streamClient is a client without an overall timeout, for large transfers.
func streamClient(c *client) *http.Client {
	return &http.Client{Transport: c.HTTP.Transport, CheckRedirect: c.HTTP.CheckRedirect}
}

func fileURL(ns, p string) string { return route.File(ns, p) }

// newFilesCmd makes the command family for one file namespace.
func newFilesCmd(ns string) *cobra.Command {
	o := &clientOptions{}
	cmd := &cobra.Command{
		Use:   ns,
		Short: fmt.Sprintf("Upload, download, list and delete replicated %s", ns),
		Long: fmt.Sprintf(`Upload, download, list and delete the replicated %s. An upload is visible
only once a quorum of nodes holds all of it, verified by SHA-256.`, ns),
	}
	o.register(cmd)
	signalCtx := func(c *cobra.Command) (context.Context, context.CancelFunc) {
		return signal.NotifyContext(c.Context(), syscall.SIGINT, syscall.SIGTERM)
	}
	upload := &cobra.Command{
		Use:   "upload LOCAL-FILE [PATH]",
		Short: "Upload a file (PATH defaults to the file's name)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			remote := filepath.Base(args[0])
			if len(args) == 2 {
				remote = args[1]
			}
			if _, err := store.CleanFilePath(ns, remote); err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil || !st.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file", args[0])
			}
			h := sha256.New()
			hp := newProgress(f, st.Size(), "hashing "+args[0])
			if _, err := io.Copy(h, hp); err != nil {
				return err
			}
			hp.finish()
			sum := hex.EncodeToString(h.Sum(nil))
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			ctx, cancel := signalCtx(c)
			defer cancel()
			p := newProgress(f, st.Size(), "uploading "+args[0])
			var fi store.File
			_, err = doStream(ctx, cl, "PUT", fileURL(ns, remote), p, st.Size(), map[string]string{api.HeaderChecksum: sum, "Content-Type": "application/octet-stream"}, &fi)
			p.finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s/%s: %d bytes, sha256 %s, revision %d\n", ns, fi.Path, fi.Size, fi.SHA256, fi.Rev)
			return nil
		},
	}
	download := &cobra.Command{
		Use:   "download PATH [LOCAL-FILE|-]",
		Short: "Download a file (to the file's name, or - for standard output), verified by SHA-256",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			if _, err := store.CleanFilePath(ns, args[0]); err != nil {
				return err
			}
			local := path.Base(args[0])
			if len(args) == 2 {
				local = args[1]
			}
			ctx, cancel := signalCtx(c)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "GET", cl.URL(fileURL(ns, args[0])), nil)
			if err != nil {
				return err
			}
			cl.Authorize(req)
			resp, err := streamClient(cl).Do(req)
			if err != nil {
				return fmt.Errorf("cannot reach raftvip at %s: %w", cl.Base, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
				return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
			}
			var w io.Writer = c.OutOrStdout()
			var tmp *os.File
			if local != "-" {
				if tmp, err = os.CreateTemp(filepath.Dir(local), "."+filepath.Base(local)+".part*"); err != nil {
					return err
				}
				defer os.Remove(tmp.Name())
				defer tmp.Close()
				w = tmp
			}
			h := sha256.New()
			p := newProgress(resp.Body, resp.ContentLength, "downloading "+args[0])
			_, err = io.Copy(io.MultiWriter(w, h), p)
			p.finish()
			if err != nil {
				return err
			}
			if want := resp.Header.Get(api.HeaderChecksum); want != "" && want != hex.EncodeToString(h.Sum(nil)) {
				return fmt.Errorf("%w: the download does not match the file's SHA-256 %s", store.ErrDigest, want)
			}
			if tmp != nil {
				if err := tmp.Sync(); err != nil {
					return err
				}
				if err := tmp.Close(); err != nil {
					return err
				}
				return os.Rename(tmp.Name(), local)
			}
			return nil
		},
	}
	var prefix string
	list := &cobra.Command{
		Use:   "list",
		Short: "List files",
		Args:  cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, cl *client, c *cobra.Command, _ []string) error {
			after := ""
			for page := 0; page < 1_000_000; page++ {
				q := url.Values{"prefix": {prefix}}
				if after != "" {
					q.Set("after", after)
				}
				var p store.FilePage
				if _, err := cl.Do(ctx, "GET", route.WithQuery(route.Namespace(ns), q), nil, &p); err != nil {
					return err
				}
				for _, f := range p.Items {
					fmt.Fprintf(c.OutOrStdout(), "%s\t%d\t%s\t%s\n", f.Path, f.Size, f.SHA256, f.Updated.Format(time.RFC3339))
				}
				if p.Next == "" {
					return nil
				}
				after = p.Next
			}
			return nil
		}),
	}
	list.Flags().StringVar(&prefix, "prefix", "", "only paths that start with this")
	del := &cobra.Command{
		Use:   "delete PATH",
		Short: "Delete a file",
		Args:  cobra.ExactArgs(1),
		RunE: clientRun(o, func(ctx context.Context, cl *client, c *cobra.Command, args []string) error {
			if _, err := store.CleanFilePath(ns, args[0]); err != nil {
				return err
			}
			if _, err := cl.Do(ctx, "DELETE", fileURL(ns, args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "deleted %s/%s\n", ns, args[0])
			return nil
		}),
	}
	cmd.AddCommand(upload, download, list, del)
	return cmd
}

// doStream sends a streamed body to c's node without an overall timeout.
func doStream(ctx context.Context, c *client, method, p string, body io.Reader, length int64, hdr map[string]string, out any) (http.Header, error) {
	sc := *c
	sc.HTTP = streamClient(c)
	req, err := http.NewRequestWithContext(ctx, method, c.URL(p), body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = length
	return sc.Send(req, hdr, out)
}

func newJobsCmd() *cobra.Command {
	o := &clientOptions{}
	jobs := &cobra.Command{Use: "jobs", Short: "Job logs"}
	o.register(jobs)
	logCmd := &cobra.Command{Use: "log", Short: "Append to and follow a job's log"}
	appendCmd := &cobra.Command{
		Use:   "append JOB [FILE|-]",
		Short: "Append standard input (or FILE) to the job's log, in chunks, each exactly once",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			var in io.Reader = c.InOrStdin()
			if len(args) == 2 && args[1] != "-" {
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			ctx, cancel := signal.NotifyContext(c.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			// Start at the log's current length; every chunk is conditional
			// on it, so a retry after a failover never appends twice.
			length, err := logLength(ctx, cl, args[0])
			if err != nil {
				return err
			}
			buf := make([]byte, store.MaxLogChunk)
			for {
				n, rerr := io.ReadFull(in, buf)
				if n > 0 {
					if length, err = appendOnce(ctx, cl, args[0], buf[:n], length); err != nil {
						return err
					}
				}
				if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
					return nil
				}
				if rerr != nil {
					return rerr
				}
			}
		},
	}
	var follow bool
	var offset uint64
	tail := &cobra.Command{
		Use:   "tail JOB",
		Short: "Print the job's log; with -f, keep printing as it grows",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			ctx, cancel := signal.NotifyContext(c.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			sc := *cl
			sc.HTTP = streamClient(cl)
			for ctx.Err() == nil {
				q := fmt.Sprintf("%s?offset=%d", route.JobLog(args[0]), offset)
				if follow {
					q += "&follow&wait=30s"
				}
				var data []byte
				hdr, err := sc.Do(ctx, "GET", q, nil, &data)
				if err != nil {
					if !follow || ctx.Err() != nil {
						return err
					}
					time.Sleep(200 * time.Millisecond) // the cluster is electing; try again
					continue
				}
				if _, err := c.OutOrStdout().Write(data); err != nil {
					return err
				}
				next, _ := strconv.ParseUint(hdr.Get(api.HeaderLogNext), 10, 64)
				offset = next
				if !follow {
					return nil
				}
			}
			return nil
		},
	}
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing as the log grows (across failovers)")
	tail.Flags().Uint64Var(&offset, "offset", 0, "start at this byte")
	logCmd.AddCommand(appendCmd, tail)
	jobs.AddCommand(logCmd)
	return jobs
}

func logLength(ctx context.Context, cl *client, job string) (uint64, error) {
	hdr, err := cl.Do(ctx, "GET", route.JobLog(job)+"?offset=0", nil, new([]byte))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(hdr.Get(api.HeaderLogLength), 10, 64)
}

// appendOnce appends a chunk at length, retrying through failovers; a 409
// that shows the chunk already went in counts as done.
func appendOnce(ctx context.Context, cl *client, job string, chunk []byte, length uint64) (uint64, error) {
	for attempt := 0; attempt < 100; attempt++ {
		var out struct {
			Length uint64 `json:"length"`
		}
		hdr, err := cl.DoRaw(ctx, "POST", route.JobLog(job), strings.NewReader(string(chunk)),
			map[string]string{api.HeaderLogOffset: strconv.FormatUint(length, 10)}, &out)
		if err == nil {
			return out.Length, nil
		}
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusPreconditionFailed {
			got, _ := strconv.ParseUint(hdr.Get(api.HeaderLogLength), 10, 64)
			if got == length+uint64(len(chunk)) {
				return got, nil
			}
			return 0, fmt.Errorf("the log of %s changed under us: %d bytes, expected %d", job, got, length)
		}
		if errors.As(err, &ae) && ae.Status < 500 {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("appending to %s: the cluster did not accept the chunk", job)
}
