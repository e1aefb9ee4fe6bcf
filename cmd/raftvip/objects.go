package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/store"
)

func newObjectsCmd() *cobra.Command {
	o := &clientOptions{}
	objs := &cobra.Command{
		Use:     "objects",
		Aliases: []string{"obj"},
		Short:   "Read and write replicated objects",
		Long: `Read and write typed JSON objects, addressed by KIND ([a-z][a-z0-9-]*) and KEY.
Writes go to the active node (a passive node forwards them); reads are
linearizable unless --stale is given.`,
	}
	o.register(objs)

	var stale bool
	objPath := func(kind, key string) string {
		if key != "" {
			return route.Object(kind, key)
		}
		return route.Kind(kind)
	}
	staleQ := func() string {
		if stale {
			return "?stale"
		}
		return ""
	}

	getCmd := &cobra.Command{
		Use:   "get KIND KEY",
		Short: "Print one object",
		Args:  cobra.ExactArgs(2),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			var raw []byte
			if _, err := c.Do(ctx, "GET", objPath(args[0], args[1])+staleQ(), nil, &raw); err != nil {
				return err
			}
			return reindent(cmd.OutOrStdout(), raw)
		}),
	}
	getCmd.Flags().BoolVar(&stale, "stale", false, "read from the node at --endpoint even if it is passive (may lag)")

	var ifMatch uint64
	var create bool
	putCmd := &cobra.Command{
		Use:   "put KIND KEY JSON|-|@FILE",
		Short: "Create or replace an object (JSON inline, from stdin with -, or from @FILE)",
		Args:  cobra.ExactArgs(3),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			body, err := readValue(args[2], cmd.InOrStdin())
			if err != nil {
				return err
			}
			method := "PUT"
			if create {
				method = "POST"
			}
			return writeObject(ctx, c, cmd, method, objPath(args[0], args[1]), body, ifMatch)
		}),
	}
	putCmd.Flags().Uint64Var(&ifMatch, "if-match", 0, "write only if the object is at this revision (compare-and-swap)")
	putCmd.Flags().BoolVar(&create, "create", false, "fail if the object exists")

	patchCmd := &cobra.Command{
		Use:   "patch KIND KEY JSON|-|@FILE",
		Short: "Apply an RFC 7386 merge patch to an object",
		Args:  cobra.ExactArgs(3),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			body, err := readValue(args[2], cmd.InOrStdin())
			if err != nil {
				return err
			}
			return writeObject(ctx, c, cmd, "PATCH", objPath(args[0], args[1]), body, ifMatch)
		}),
	}
	patchCmd.Flags().Uint64Var(&ifMatch, "if-match", 0, "patch only if the object is at this revision")

	deleteCmd := &cobra.Command{
		Use:   "delete KIND KEY",
		Short: "Delete an object",
		Args:  cobra.ExactArgs(2),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			return writeObject(ctx, c, cmd, "DELETE", objPath(args[0], args[1]), nil, ifMatch)
		}),
	}
	deleteCmd.Flags().Uint64Var(&ifMatch, "if-match", 0, "delete only if the object is at this revision")

	var prefix, after string
	var limit int
	var all bool
	listCmd := &cobra.Command{
		Use:   "list KIND",
		Short: "List the objects of a kind, in key order",
		Args:  cobra.ExactArgs(1),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			if limit < 0 || limit > store.MaxListLimit {
				return fmt.Errorf("--limit %d must be between 1 and %d", limit, store.MaxListLimit)
			}
			items := []*store.Object{}
			next := after
			for page := 0; page < 1_000_000; page++ {
				q := url.Values{}
				if stale {
					q.Set("stale", "")
				}
				for k, v := range map[string]string{"prefix": prefix, "after": next} {
					if v != "" {
						q.Set(k, v)
					}
				}
				if limit > 0 {
					q.Set("limit", strconv.Itoa(limit))
				}
				var p store.Page
				if _, err := c.Do(ctx, "GET", objPath(args[0], "")+"?"+q.Encode(), nil, &p); err != nil {
					return err
				}
				items = append(items, p.Items...)
				next = p.Next
				if !all || next == "" {
					break
				}
			}
			return printJSON(cmd.OutOrStdout(), store.Page{Items: items, Next: next})
		}),
	}
	listCmd.Flags().StringVar(&prefix, "prefix", "", "only keys that start with this")
	listCmd.Flags().StringVar(&after, "after", "", "only keys after this one (the previous page's next)")
	listCmd.Flags().IntVar(&limit, "limit", 0, "page size (default 100)")
	listCmd.Flags().BoolVar(&all, "all", false, "fetch every page")
	listCmd.Flags().BoolVar(&stale, "stale", false, "read from the node at --endpoint even if it is passive (may lag)")

	objs.AddCommand(getCmd, putCmd, patchCmd, deleteCmd, listCmd)
	return objs
}

// readValue reads a JSON argument: inline, "-" for stdin, or "@file".
func readValue(arg string, stdin io.Reader) ([]byte, error) {
	var b []byte
	var err error
	switch {
	case arg == "-":
		b, err = io.ReadAll(io.LimitReader(stdin, 64<<20))
	case strings.HasPrefix(arg, "@"):
		b, err = os.ReadFile(arg[1:])
	default:
		b = []byte(arg)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the value: %w", err)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("the value is not valid JSON")
	}
	return b, nil
}

func writeObject(ctx context.Context, c *client, cmd *cobra.Command, method, path string, body []byte, ifMatch uint64) error {
	hdr := map[string]string{}
	if ifMatch > 0 {
		hdr["If-Match"] = strconv.Quote(strconv.FormatUint(ifMatch, 10))
	}
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	var raw []byte
	if _, err := c.DoRaw(ctx, method, path, rd, hdr, &raw); err != nil {
		return err
	}
	return reindent(cmd.OutOrStdout(), raw)
}

func reindent(w io.Writer, raw []byte) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		_, err := w.Write(raw)
		return err
	}
	return printJSON(w, v)
}
