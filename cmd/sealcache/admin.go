package main

// "sealcache admin ..." talks to a running server's admin API
// (proto/sealcache/admin/v1) in its JSON form over HTTP.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/dustin/go-humanize"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
	"github.com/sealcache/sealcache/proto/sealcache/admin/v1/adminv1connect"
)

const adminUsage = `Usage: sealcache admin [--server URL] [--api_key KEY] [--json] COMMAND

Org admin commands (an admin API key of the org):
  encryption status                 show the org's CMEK state and key health
  encryption enable --key_uri URI   turn CMEK on with your KMS key
  encryption disable --yes          turn CMEK off; data under the key becomes unreadable
  encryption check                  ask the KMS now whether the key works
  keys list                         list the org's API keys
  keys create --role R [--label L]  create a key (R: admin, writer or reader); secret shown once
  keys revoke ID                    revoke a key
  audit [--limit N] [--page_token T]  show the org's audit log, newest first

Operator commands (the operator API key):
  orgs create NAME                  create an org and its first admin key
  orgs list                         list orgs
  orgs delete ID --confirm NAME     delete an org and all its data

Flags, accepted anywhere on the line:
  --server URL    the server's HTTP address (default $SEALCACHE_SERVER or http://127.0.0.1:8080)
  --api_key KEY   the API key (default $SEALCACHE_API_KEY)
  --json          print the API's JSON answer, for scripts

Exit status: 0 on success, 1 when the server refuses or fails, 2 on bad usage.
`

// adminTimeout bounds one admin call; enabling CMEK waits for two KMS
// round trips.
const adminTimeout = 2 * time.Minute

// usageError is a mistake on the command line: exit status 2. full asks
// for the whole command list (for an unknown or missing command).
type usageError struct {
	msg  string
	full bool
}

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{msg: fmt.Sprintf(format, args...)} }

// adminCLI holds the global flags and the clients built from them.
type adminCLI struct {
	server, apiKey string
	json           bool
	stdout         io.Writer

	org      adminv1connect.OrgServiceClient
	enc      adminv1connect.EncryptionServiceClient
	operator adminv1connect.OperatorServiceClient
}

type adminCommandFunc func(ctx context.Context, c *adminCLI, args []string) error

var adminCommands = map[string]adminCommandFunc{
	"encryption status":  adminEncryptionStatus,
	"encryption enable":  adminEncryptionEnable,
	"encryption disable": adminEncryptionDisable,
	"encryption check":   adminEncryptionCheck,
	"keys list":          adminKeysList,
	"keys create":        adminKeysCreate,
	"keys revoke":        adminKeysRevoke,
	"audit":              adminAudit,
	"orgs create":        adminOrgsCreate,
	"orgs list":          adminOrgsList,
	"orgs delete":        adminOrgsDelete,
}

func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &adminCLI{stdout: stdout}
	// Global flags may come first or among the command's own flags.
	global := c.flagSet("sealcache admin")
	global.SetOutput(io.Discard)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, adminUsage)
			return 0
		}
		return adminFail(stderr, usagef("%v", err))
	}
	rest := global.Args()
	if len(rest) > 0 && rest[0] == "help" {
		fmt.Fprint(stdout, adminUsage)
		return 0
	}
	run, rest, err := findAdminCommand(rest)
	if err != nil {
		return adminFail(stderr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	if err := run(ctx, c, rest); err != nil {
		return adminFail(stderr, wrongPortHint(ctx, c.server, err))
	}
	return 0
}

// findAdminCommand matches "group command" (or a one-word command) and
// returns the arguments after it.
func findAdminCommand(args []string) (adminCommandFunc, []string, error) {
	if len(args) == 0 {
		return nil, nil, usageError{msg: "missing command", full: true}
	}
	if run, ok := adminCommands[args[0]]; ok {
		return run, args[1:], nil
	}
	if len(args) > 1 {
		if run, ok := adminCommands[args[0]+" "+args[1]]; ok {
			return run, args[2:], nil
		}
	}
	return nil, nil, usageError{msg: fmt.Sprintf("unknown command %q", strings.Join(args[:min(len(args), 2)], " ")), full: true}
}

func adminFail(stderr io.Writer, err error) int {
	var uerr usageError
	if errors.As(err, &uerr) {
		if uerr.full {
			fmt.Fprintf(stderr, "sealcache admin: %s\n\n%s", uerr.msg, adminUsage)
		} else {
			fmt.Fprintf(stderr, "sealcache admin: %s\nRun \"sealcache admin help\" for the commands and their flags.\n", uerr.msg)
		}
		return 2
	}
	fmt.Fprintf(stderr, "sealcache admin: %v\n", err)
	if connect.CodeOf(err) == connect.CodeUnauthenticated {
		fmt.Fprintln(stderr, "Pass the key with --api_key or the SEALCACHE_API_KEY environment variable.")
	}
	return 1
}

// flagSet returns a flag set with the global flags, so they are accepted
// after the command too.
func (c *adminCLI) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if c.server == "" {
		c.server = envOr("SEALCACHE_SERVER", defaultServerURL)
	}
	if c.apiKey == "" {
		c.apiKey = os.Getenv("SEALCACHE_API_KEY")
	}
	fs.StringVar(&c.server, "server", c.server, "server HTTP address")
	fs.StringVar(&c.apiKey, "api_key", c.apiKey, "API key")
	fs.BoolVar(&c.json, "json", c.json, "print JSON")
	return fs
}

// parse parses flags and positional arguments in any order and checks the
// number of positional arguments.
func (c *adminCLI) parse(fs *flag.FlagSet, args []string, positional ...string) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, usagef("%s: %v", fs.Name(), err)
	}
	if len(pos) != len(positional) {
		want := "no arguments"
		if len(positional) > 0 {
			want = strings.Join(positional, " ")
		}
		return nil, usagef("%s takes %s, got %q", fs.Name(), want, pos)
	}
	c.connect()
	return pos, nil
}

// connect builds the clients once the flags are known. They speak the
// Connect protocol with JSON, like curl would.
func (c *adminCLI) connect() {
	base := strings.TrimRight(c.server, "/")
	hc := &http.Client{}
	opts := []connect.ClientOption{connect.WithProtoJSON(), connect.WithInterceptors(c.sendKey())}
	c.org = adminv1connect.NewOrgServiceClient(hc, base, opts...)
	c.enc = adminv1connect.NewEncryptionServiceClient(hc, base, opts...)
	c.operator = adminv1connect.NewOperatorServiceClient(hc, base, opts...)
}

func (c *adminCLI) sendKey() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if c.apiKey != "" {
				req.Header().Set("x-api-key", c.apiKey)
			}
			return next(ctx, req)
		}
	}
}

// printJSON prints m as the API's JSON, with every field present.
func (c *adminCLI) printJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.stdout, string(b))
	return err
}

// table writes aligned columns.
func (c *adminCLI) table(header string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func fmtTimestamp(ts *timestamppb.Timestamp, never string) string {
	if ts == nil {
		return never
	}
	return ts.AsTime().Local().Format("2006-01-02 15:04:05 MST")
}

func roleArg(s string) (adminv1.Role, error) {
	switch strings.ToLower(s) {
	case "admin":
		return adminv1.Role_ROLE_ADMIN, nil
	case "writer":
		return adminv1.Role_ROLE_WRITER, nil
	case "reader":
		return adminv1.Role_ROLE_READER, nil
	}
	return 0, usagef("--role %q: use admin, writer or reader", s)
}

func roleText(r adminv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

// ---- encryption -----------------------------------------------------------

func adminEncryptionStatus(ctx context.Context, c *adminCLI, args []string) error {
	if _, err := c.parse(c.flagSet("encryption status"), args); err != nil {
		return err
	}
	resp, err := c.enc.GetEncryptionConfig(ctx, connect.NewRequest(&adminv1.GetEncryptionConfigRequest{}))
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.Msg)
	}
	return c.printConfig(resp.Msg.GetConfig())
}

func (c *adminCLI) printConfig(cfg *adminv1.EncryptionConfig) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	if cfg.GetEnabled() {
		line("State", "Enabled")
		line("Key id", cfg.GetKeyId())
		line("Provider", cfg.GetProvider())
		line("Key URI", cfg.GetCustomerKeyUri())
		line("Enabled since", fmtTimestamp(cfg.GetCreated(), "-"))
		line("Last re-wrap", fmtTimestamp(cfg.GetLastRewrapped(), "not yet"))
	} else {
		line("State", "Disabled")
	}
	line("Last KMS success", fmtTimestamp(cfg.GetLastKmsSuccess(), "never"))
	failure := fmtTimestamp(cfg.GetLastKmsFailure(), "none")
	if msg := cfg.GetLastKmsFailureMessage(); cfg.GetLastKmsFailure() != nil && msg != "" {
		failure += ": " + msg
	}
	line("Last KMS failure", failure)
	line("Key cache TTL", (time.Duration(cfg.GetKeyCacheTtlSeconds()) * time.Second).String())
	if !cfg.GetEnabled() {
		for _, p := range cfg.GetSupportedProviders() {
			line("Grant for "+p.GetName(), grantText(p.GetName(), p.GetOperatorPrincipal()))
		}
	}
	return tw.Flush()
}

// grantText says what an org admin grants the operator on a key of the
// provider, or why there is nothing to show.
func grantText(provider, principal string) string {
	flag := map[string]string{"gcp-kms": "--gcp_kms_principal", "aws-kms": "--aws_kms_principal"}[provider]
	switch {
	case principal != "":
		return principal
	case provider == "local-kms":
		return "nothing to grant: local keys are for trying CMEK, files the operator makes with \"sealcache kms create-local-key NAME\""
	case flag != "":
		return "not configured on this server (the operator sets " + flag + "); ask the operator which identity to grant"
	}
	return "nothing to grant"
}

func adminEncryptionEnable(ctx context.Context, c *adminCLI, args []string) error {
	fs := c.flagSet("encryption enable")
	uri := fs.String("key_uri", "", "customer KMS key URI")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	if *uri == "" {
		return usagef("encryption enable needs --key_uri URI, e.g. gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K")
	}
	resp, err := c.enc.SetEncryptionConfig(ctx, connect.NewRequest(&adminv1.SetEncryptionConfigRequest{Enabled: true, CustomerKeyUri: *uri}))
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.Msg)
	}
	fmt.Fprintf(c.stdout, "CMEK is enabled with key id %s. New objects are sealed with %s.\n"+
		"The org's objects stored before were deleted, so no unsealed copy stays on disk: the next builds run their actions again.\n\n",
		resp.Msg.GetConfig().GetKeyId(), *uri)
	return c.printConfig(resp.Msg.GetConfig())
}

func adminEncryptionDisable(ctx context.Context, c *adminCLI, args []string) error {
	fs := c.flagSet("encryption disable")
	yes := fs.Bool("yes", false, "confirm")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	if !*yes {
		return usagef("encryption disable deletes the org's encryption key records: every object stored under the key becomes unreadable within the key cache TTL, and this cannot be undone. Add --yes to confirm")
	}
	resp, err := c.enc.SetEncryptionConfig(ctx, connect.NewRequest(&adminv1.SetEncryptionConfigRequest{Enabled: false}))
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.Msg)
	}
	ttl := time.Duration(resp.Msg.GetConfig().GetKeyCacheTtlSeconds()) * time.Second
	fmt.Fprintf(c.stdout, "CMEK is disabled. The objects sealed under the old key were deleted, and no server opens any copy of them after %s.\n", ttl)
	return nil
}

func adminEncryptionCheck(ctx context.Context, c *adminCLI, args []string) error {
	if _, err := c.parse(c.flagSet("encryption check"), args); err != nil {
		return err
	}
	resp, err := c.enc.CheckEncryptionKey(ctx, connect.NewRequest(&adminv1.CheckEncryptionKeyRequest{}))
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.Msg)
	}
	cfg := resp.Msg.GetConfig()
	fmt.Fprintf(c.stdout, "The key works: %s unwrapped key %s at %s.\n", cfg.GetCustomerKeyUri(), cfg.GetKeyId(), fmtTimestamp(cfg.GetLastKmsSuccess(), "-"))
	return nil
}

// ---- keys and audit -------------------------------------------------------

func adminKeysList(ctx context.Context, c *adminCLI, args []string) error {
	if _, err := c.parse(c.flagSet("keys list"), args); err != nil {
		return err
	}
	resp, err := c.org.ListApiKeys(ctx, connect.NewRequest(&adminv1.ListApiKeysRequest{}))
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.Msg)
	}
	var rows [][]string
	for _, k := range resp.Msg.GetKeys() {
		rows = append(rows, []string{k.GetId(), roleText(k.GetRole()), fmtTimestamp(k.GetCreated(), "-"), fmtTimestamp(k.GetLastUsed(), "never"), k.GetLabel()})
	}
	return c.table("ID\tROLE\tCREATED\tLAST USED\tLABEL", rows)
}

func adminKeysCreate(ctx context.Context, c *adminCLI, args []string) error {
	fs := c.flagSet("keys create")
	roleFlag := fs.String("role", "", "admin, writer or reader")
	label := fs.String("label", "", "label")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	if *roleFlag == "" {
		return usagef("keys create needs --role admin, writer or reader")
	}
	role, err := roleArg(*roleFlag)
	if err != nil {
		return err
	}
	resp, err := c.org.CreateApiKey(ctx, connect.NewRequest(&adminv1.CreateApiKeyRequest{Role: role, Label: *label}))
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.Msg)
	}
	k := resp.Msg.GetKey()
	fmt.Fprintf(c.stdout, "Created %s key %s %q.\n\n", roleText(k.GetRole()), k.GetId(), k.GetLabel())
	c.printSecret("API key (shown only now; store it safely):", resp.Msg.GetSecret(), resp.Msg.GetBazelFlags())
	return nil
}

func (c *adminCLI) printSecret(title, secret string, flags []string) {
	fmt.Fprintf(c.stdout, "%s\n  %s\n\nBazel flags for .bazelrc:\n", title, secret)
	for _, f := range flags {
		fmt.Fprintf(c.stdout, "  build %s\n", f)
	}
}

func adminKeysRevoke(ctx context.Context, c *adminCLI, args []string) error {
	pos, err := c.parse(c.flagSet("keys revoke"), args, "ID")
	if err != nil {
		return err
	}
	resp, err := c.org.RevokeApiKey(ctx, connect.NewRequest(&adminv1.RevokeApiKeyRequest{Id: pos[0]}))
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.Msg)
	}
	fmt.Fprintf(c.stdout, "Revoked API key %s.\n", pos[0])
	return nil
}

func adminAudit(ctx context.Context, c *adminCLI, args []string) error {
	fs := c.flagSet("audit")
	limit := fs.Int("limit", 50, "events per page")
	token := fs.String("page_token", "", "next page token of an earlier call")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	resp, err := c.org.ListAuditEvents(ctx, connect.NewRequest(&adminv1.ListAuditEventsRequest{PageSize: int32(*limit), PageToken: *token}))
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.Msg)
	}
	var rows [][]string
	for _, e := range resp.Msg.GetEvents() {
		rows = append(rows, []string{fmtTimestamp(e.GetTime(), "-"), e.GetActorKeyId(), e.GetAction(), e.GetDetails()})
	}
	if err := c.table("TIME\tKEY\tACTION\tDETAILS", rows); err != nil {
		return err
	}
	if next := resp.Msg.GetNextPageToken(); next != "" {
		fmt.Fprintf(c.stdout, "\nOlder events: sealcache admin audit --page_token %s\n", next)
	}
	return nil
}

// ---- orgs (operator) ------------------------------------------------------

func adminOrgsCreate(ctx context.Context, c *adminCLI, args []string) error {
	pos, err := c.parse(c.flagSet("orgs create"), args, "NAME")
	if err != nil {
		return err
	}
	resp, err := c.operator.CreateOrg(ctx, connect.NewRequest(&adminv1.CreateOrgRequest{Name: pos[0]}))
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.Msg)
	}
	o := resp.Msg.GetOrg()
	fmt.Fprintf(c.stdout, "Created org %s (id %s).\n\n", o.GetName(), o.GetId())
	c.printSecret("First admin key (shown only now; hand it to the org's admin):", resp.Msg.GetAdminKeySecret(), resp.Msg.GetBazelFlags())
	return nil
}

func adminOrgsList(ctx context.Context, c *adminCLI, args []string) error {
	if _, err := c.parse(c.flagSet("orgs list"), args); err != nil {
		return err
	}
	resp, err := c.operator.ListOrgs(ctx, connect.NewRequest(&adminv1.ListOrgsRequest{}))
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.Msg)
	}
	var rows [][]string
	for _, s := range resp.Msg.GetOrgs() {
		cmek := "off"
		if s.GetOrg().GetEncryptionEnabled() {
			cmek = "on"
		}
		rows = append(rows, []string{s.GetOrg().GetId(), s.GetOrg().GetName(), fmtTimestamp(s.GetOrg().GetCreated(), "-"), humanize.IBytes(s.GetStoredBytes()), cmek})
	}
	return c.table("ID\tNAME\tCREATED\tSTORED\tCMEK", rows)
}

// orgNotFoundByID explains a delete of an org id that does not exist: it
// is often the org's name, typed where the id goes.
func (c *adminCLI) orgNotFoundByID(ctx context.Context, arg string, notFound error) error {
	list, err := c.operator.ListOrgs(ctx, connect.NewRequest(&adminv1.ListOrgsRequest{}))
	if err == nil {
		for _, s := range list.Msg.GetOrgs() {
			if s.GetOrg().GetName() == arg {
				return fmt.Errorf("%q is the name of an org; orgs delete takes its id (from \"sealcache admin orgs list\"): sealcache admin orgs delete %s --confirm %s",
					arg, s.GetOrg().GetId(), arg)
			}
		}
	}
	return fmt.Errorf("%w\norgs delete takes the org's id, as \"sealcache admin orgs list\" shows it", notFound)
}

func adminOrgsDelete(ctx context.Context, c *adminCLI, args []string) error {
	fs := c.flagSet("orgs delete")
	confirm := fs.String("confirm", "", "the org's name, typed again")
	pos, err := c.parse(fs, args, "ID")
	if err != nil {
		return err
	}
	if *confirm == "" {
		return usagef("orgs delete deletes the org, its keys and every object it stored, and cannot be undone: add --confirm NAME with the org's name")
	}
	resp, err := c.operator.DeleteOrg(ctx, connect.NewRequest(&adminv1.DeleteOrgRequest{OrgId: pos[0], ConfirmName: *confirm}))
	if connect.CodeOf(err) == connect.CodeNotFound {
		return c.orgNotFoundByID(ctx, pos[0], err)
	}
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.Msg)
	}
	fmt.Fprintf(c.stdout, "Deleted org %s (%s) with its keys and stored objects.\n", *confirm, pos[0])
	return nil
}
