package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/raftvip/raftvip/api"
	route "github.com/raftvip/raftvip/client"
)

func newTokensCmd() *cobra.Command {
	o := &clientOptions{}
	tokens := &cobra.Command{
		Use:   "tokens",
		Short: "Create, list and revoke named API tokens",
		Long: `Named API tokens have a role: read (GET and HEAD), write (and every change to
objects, files and job logs) or admin (and HA administration and tokens). The
cluster keeps only each token's SHA-256; the secret is printed once, when the
token is created. The cluster token in ha-state.json stays an admin token.
Managing tokens needs an admin token.`,
	}
	o.register(tokens)

	var role string
	createCmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a named token and print its secret (shown only now)",
		Args:  cobra.ExactArgs(1),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			var info api.TokenInfo
			if _, err := c.Do(ctx, "POST", route.Tokens, api.TokenCreate{Name: args[0], Role: role}, &info); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), info.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "created %s token %s; the secret above is shown only now\n", info.Role, info.Name)
			return nil
		}),
	}
	createCmd.Flags().StringVar(&role, "role", "read", "read, write or admin")

	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List the named tokens",
		Args:  cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, _ []string) error {
			var ts []api.TokenInfo
			if _, err := c.Do(ctx, "GET", route.Tokens, nil, &ts); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tCREATED")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.Role, t.Created.Format("2006-01-02 15:04:05Z"))
			}
			return tw.Flush()
		}),
	}

	revokeCmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a named token",
		Args:  cobra.ExactArgs(1),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			if _, err := c.Do(ctx, "DELETE", route.Token(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
			return nil
		}),
	}
	tokens.AddCommand(createCmd, listCmd, revokeCmd)
	return tokens
}
