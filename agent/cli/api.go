package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// DefaultAPIURL is where `ferry api` finds the relay's management API by default.
const DefaultAPIURL = "http://127.0.0.1:4041"

// apiField is one settable field of a management API object: a flag --NAME that becomes
// the JSON field NAME with - for _. PEM fields accept @FILE; JSON fields take an object.
type apiField struct {
	name  string
	usage string
	pem   bool
	json  bool
}

var (
	descField = apiField{name: "description", usage: "what it is for (up to 255 characters)"}
	metaField = apiField{name: "metadata", usage: "free-form data for your tools (up to 4096 characters)"}
)

// jsonField is the whole request body as JSON (or @FILE); the other flags override its
// fields. It is the way to give edges, backends, IP policies and event subscriptions,
// whose objects nest.
var jsonField = apiField{name: "json", usage: "the request body: a JSON object, or @FILE (other flags override its fields)"}

// nested lists the collections whose objects nest, settable with --json only: their
// command-line name, API path and description.
var nested = []struct{ name, path, usage string }{
	{"edges-https", "/edges/https", "HTTPS edges: hostports and routes to backends"},
	{"edges-tls", "/edges/tls", "TLS edges: hostports, a backend, termination"},
	{"edges-tcp", "/edges/tcp", "TCP edges: reserved addresses and a backend"},
	{"backends-tunnel-group", "/backends/tunnel_group", "tunnel group backends: labeled tunnels by labels"},
	{"backends-failover", "/backends/failover", "failover backends: backends tried in order"},
	{"backends-weighted", "/backends/weighted", "weighted backends: backends by weight"},
	{"backends-http-response", "/backends/http_response", "fixed HTTP answers"},
	{"ip-policies", "/ip_policies", "IP policies: CIDR rules for edges and routes"},
	{"event-subscriptions", "/event_subscriptions", "event subscriptions: webhooks and files of your events"},
}

// apiResources are the management API's collections, named as on the command line.
var apiResources = []struct {
	name, usage    string
	create, update []apiField
}{
	{"reserved-domains", "domains reserved for your account (wildcards too)",
		[]apiField{{name: "domain", usage: "the `DOMAIN` to reserve, e.g. app.example.com or '*.example.com'"}, descField, metaField,
			{name: "certificate-id", usage: "`ID` of an uploaded TLS certificate to serve for it"},
			{name: "certificate-management-policy", usage: "automated certificate `JSON`, e.g. '{\"authority\":\"letsencrypt\"}'", json: true}},
		[]apiField{descField, metaField, {name: "certificate-id", usage: "`ID` of an uploaded TLS certificate to attach (\"\" detaches)"},
			{name: "certificate-management-policy", usage: "automated certificate `JSON`, or null", json: true}}},
	{"tls-certificates", "uploaded TLS certificates (the private key never comes back)",
		[]apiField{{name: "certificate-pem", usage: "the certificate bundle, leaf first (`PEM` or @FILE)", pem: true},
			{name: "private-key-pem", usage: "the leaf's private key (`PEM` or @FILE)", pem: true}, descField, metaField},
		[]apiField{descField, metaField}},
	{"certificate-authorities", "CA certificates for mutual TLS",
		[]apiField{{name: "ca-pem", usage: "one CA certificate (`PEM` or @FILE)", pem: true}, descField, metaField},
		[]apiField{descField, metaField}},
	{"reserved-addrs", "reserved TCP addresses (the relay picks the port)", []apiField{descField, metaField}, []apiField{descField, metaField}},
	{"credentials", "agent authtokens", []apiField{descField, metaField}, []apiField{descField, metaField}},
	{"api-keys", "management API keys", []apiField{descField, metaField}, []apiField{descField, metaField}},
}

// unknownSub is the action of a command whose subcommands are the choices: without one
// it shows the help; with a word that names none it says which there are (usage error).
func unknownSub(name, what string, cmd *cli.Command) cli.ActionFunc {
	return func(c *cli.Context) error {
		if !c.Args().Present() {
			return cli.ShowSubcommandHelp(c)
		}
		names := make([]string, 0, len(cmd.Subcommands))
		for _, s := range cmd.Subcommands {
			if s.Name != "help" {
				names = append(names, s.Name)
			}
		}
		return usageErr("%s: no %s %q; want one of: %s", name, what, c.Args().First(), strings.Join(names, ", "))
	}
}

// secretDefault keeps a secret taken from the environment out of --help, which would
// otherwise print it as the flag's default.
func secretDefault(envVar string) string {
	if os.Getenv(envVar) != "" {
		return "$" + envVar + ", hidden"
	}
	return ""
}

func apiCommand(env Env) *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "api-url", Usage: "the relay's management API `URL`", EnvVars: []string{"FERRY_API_URL"}, DefaultText: DefaultAPIURL},
		&cli.StringFlag{Name: "api-key", Usage: "management API `KEY` (ferry-relay apikey create)", EnvVars: []string{"FERRY_API_KEY"},
			DefaultText: secretDefault("FERRY_API_KEY")},
		&cli.StringFlag{Name: "config", Usage: "configuration `FILE` (api_key and api_url keys)"},
	}
	cmd := &cli.Command{Name: "api", Usage: "call the relay's management API (reserved domains, certificates, addresses, keys, edges, backends, IP policies, event subscriptions)", Flags: flags}
	type resource struct {
		name, usage, path string
		create, update    []apiField
	}
	var resources []resource
	for _, r := range apiResources {
		resources = append(resources, resource{r.name, r.usage, "/" + strings.ReplaceAll(r.name, "-", "_"), r.create, r.update})
	}
	for _, n := range nested {
		resources = append(resources, resource{n.name, n.usage, n.path, []apiField{descField, metaField}, []apiField{descField, metaField}})
	}
	for _, res := range resources {
		res.create = append(res.create[:len(res.create):len(res.create)], jsonField)
		res.update = append(res.update[:len(res.update):len(res.update)], jsonField)
		path := res.path
		rc := &cli.Command{Name: res.name, Usage: res.usage, Flags: flags}
		call := func(method, p string, body map[string]any) cli.ActionFunc {
			return func(c *cli.Context) error { return apiCall(c, env, method, p, body) }
		}
		rc.Subcommands = []*cli.Command{
			{Name: "list", Usage: "list them, newest first", Flags: append(flags,
				&cli.IntFlag{Name: "limit", Usage: "at most `N` per page"},
				&cli.StringFlag{Name: "before-id", Usage: "the page after `ID` (next_page_uri gives it)"}),
				Action: func(c *cli.Context) error {
					q := url.Values{}
					if c.IsSet("limit") {
						q.Set("limit", fmt.Sprint(c.Int("limit")))
					}
					if c.IsSet("before-id") {
						q.Set("before_id", c.String("before-id"))
					}
					p := path
					if len(q) > 0 {
						p += "?" + q.Encode()
					}
					return call("GET", p, nil)(c)
				}},
			{Name: "get", Usage: "show one", ArgsUsage: "ID", Flags: flags, Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				return call("GET", path+"/"+id, nil)(c)
			}},
			{Name: "create", Usage: "create one", Flags: append(flags, fieldFlags(res.create)...), Action: func(c *cli.Context) error {
				body, err := fieldBody(c, res.create)
				if err != nil {
					return err
				}
				return call("POST", path, body)(c)
			}},
			{Name: "update", Usage: "change one (only the flags given)", ArgsUsage: "ID", Flags: append(flags, fieldFlags(res.update)...), Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				body, err := fieldBody(c, res.update)
				if err != nil {
					return err
				}
				return call("PATCH", path+"/"+id, body)(c)
			}},
			{Name: "delete", Usage: "delete one", ArgsUsage: "ID", Flags: flags, Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				return call("DELETE", path+"/"+id, nil)(c)
			}},
		}
		rc.Action = unknownSub("api "+res.name, "action", rc)
		cmd.Subcommands = append(cmd.Subcommands, rc)
	}
	cmd.Action = unknownSub("api", "resource", cmd)
	return cmd
}

func oneID(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usageErr("%s needs one ID argument (see: ferry api %s list)", c.Command.FullName(), c.Lineage()[1].Command.Name)
	}
	return url.PathEscape(c.Args().First()), nil
}

func fieldFlags(fs []apiField) []cli.Flag {
	out := make([]cli.Flag, len(fs))
	for i, f := range fs {
		out[i] = &cli.StringFlag{Name: f.name, Usage: f.usage}
	}
	return out
}

// fieldBody builds the JSON body from the flags given; PEM flags read @FILE.
func fieldBody(c *cli.Context, fs []apiField) (map[string]any, error) {
	body := map[string]any{}
	if c.IsSet(jsonField.name) {
		v := c.String(jsonField.name)
		src := "--json"
		if strings.HasPrefix(v, "@") {
			b, err := os.ReadFile(v[1:])
			if err != nil {
				return nil, usageErr("--json: %v", err)
			}
			v, src = string(b), v[1:]
		}
		if err := json.Unmarshal([]byte(v), &body); err != nil || body == nil {
			return nil, usageErr("%s: want a JSON object, e.g. '{\"description\": \"web\"}': %v", src, err)
		}
	}
	for _, f := range fs {
		if !c.IsSet(f.name) || f.name == jsonField.name {
			continue
		}
		key := strings.ReplaceAll(f.name, "-", "_")
		v := c.String(f.name)
		switch {
		case f.pem && strings.HasPrefix(v, "@"):
			b, err := os.ReadFile(v[1:])
			if err != nil {
				return nil, usageErr("--%s: %v", f.name, err)
			}
			body[key] = string(b)
		case f.json:
			var obj any
			if err := json.Unmarshal([]byte(v), &obj); err != nil {
				return nil, usageErr("--%s: want JSON, e.g. '{\"authority\":\"letsencrypt\"}' or null: %v", f.name, err)
			}
			body[key] = obj
		default:
			body[key] = v
		}
	}
	return body, nil
}

// apiCall sends one request and prints the JSON answer; API errors become exit codes.
func apiCall(c *cli.Context, env Env, method, path string, body map[string]any) error {
	base, key := c.String("api-url"), c.String("api-key")
	if !c.IsSet("api-url") || !c.IsSet("api-key") {
		file, _, err := loadFile(c)
		if err != nil {
			return err
		}
		if !c.IsSet("api-url") && file.APIURL != "" {
			base = file.APIURL
		}
		if !c.IsSet("api-key") && file.APIKey != "" {
			key = file.APIKey
		}
	}
	if base == "" {
		base = DefaultAPIURL
	}
	if key == "" {
		return usageErr("no API key: pass --api-key, set FERRY_API_KEY, or put api_key in the config file (create one on the relay with: ferry-relay apikey create)")
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.Context, method, strings.TrimRight(base, "/")+path, rd)
	if err != nil {
		return usageErr("--api-url %q: %v", base, err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return &exitError{code: ExitUnreachable, err: fmt.Errorf("management API at %s: %w (is the relay's --api-addr reachable from here?)", base, err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return &exitError{code: ExitUnreachable, err: err}
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Code string `json:"error_code"`
			Msg  string `json:"msg"`
		}
		if json.Unmarshal(data, &e) != nil || e.Msg == "" {
			e.Msg = strings.TrimSpace(string(data))
		}
		code := ExitError
		if resp.StatusCode == http.StatusUnauthorized {
			code = ExitAuth
		}
		return &exitError{code: code, err: fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, e.Code, e.Msg)}
	}
	if len(data) == 0 {
		return nil // 204 after a delete
	}
	var out bytes.Buffer
	if json.Indent(&out, bytes.TrimSpace(data), "", "  ") != nil {
		return errors.New("management API answered with something other than JSON")
	}
	out.WriteByte('\n')
	_, err = env.Stdout.Write(out.Bytes())
	return err
}
