package workspace

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tether-dev/tether/internal/errcat"
)

// Schema is the small subset of JSON Schema that describes tether.yaml. The
// same value prints the JSON Schema for editors (tether schema) and checks a
// YAML tree for unknown fields, wrong types, missing required fields and
// values outside an enum, with a field path for each problem.
type Schema struct {
	Type        string // object, array, string, integer, boolean, scalar
	Description string
	Props       []Prop  // object properties, in file order
	Values      *Schema // object: schema of every value (a map such as env)
	Items       *Schema // array items
	Enum        []string
	Min, Max    int // integer bounds, when Max > 0
	Required    []string
	Extra       map[string]any // raw JSON Schema (e.g. allOf) for editors only
}

// Prop is one named object property.
type Prop struct {
	Name   string
	Schema *Schema
}

func str(desc string) *Schema { return &Schema{Type: "string", Description: desc} }

func strs(desc string) *Schema {
	return &Schema{Type: "array", Description: desc, Items: &Schema{Type: "string"}}
}

func obj(desc string, required []string, props ...Prop) *Schema {
	return &Schema{Type: "object", Description: desc, Props: props, Required: required}
}

func p(name string, s *Schema) Prop { return Prop{Name: name, Schema: s} }

func port(desc string) *Schema {
	return &Schema{Type: "integer", Description: desc, Min: 0, Max: 65535}
}

var envSchema = &Schema{Type: "object", Description: "Environment variables added to the app's environment.",
	Values: &Schema{Type: "scalar"}}

var routesSchema = obj("What goes through the tunnel; everything else is dialled directly.", nil,
	p("cidrs", strs("Private address ranges, e.g. 10.10.0.0/16.")),
	p("domains", strs("Private DNS suffixes, e.g. vpc.internal; names under them are resolved on the far side.")),
)

var proxySchema = &Schema{
	Type: "object", Description: "A way into the cloud: an SSH proxy machine or a Kubernetes cluster.",
	Required: []string{"name"},
	Props: []Prop{
		p("name", str("Unique name; run configurations refer to it.")),
		p("ssh", obj("A proxy machine (any Linux host with OpenSSH) reached over SSH.", []string{"host"},
			p("host", str("Host name, address or ~/.ssh/config alias.")),
			p("port", port("SSH port (default 22).")),
			p("user", str("Login user (default: ~/.ssh/config, else the local user).")),
			p("identityFile", str("Private key file; ~ and relative paths are resolved.")),
			p("knownHostsFile", str("known_hosts file (default ~/.ssh/known_hosts).")),
			p("strictHostKeyChecking", &Schema{Type: "string", Enum: []string{"yes", "accept-new"},
				Description: "yes: unknown host keys are asked about (IDE) or refused (CLI); accept-new: unknown keys are added."}),
			p("proxyJump", str("Jump hosts, as ssh -J: user@host:port[,user@host2]")),
			p("advertiseAddress", str("The proxy machine's address as cloud callers reach it (for expose); default: discovered on the proxy machine.")),
		)),
		p("kubernetes", obj("A Kubernetes cluster reached through its API server.", nil,
			p("kubeconfig", str("kubeconfig file (default ~/.kube/config).")),
			p("context", str("Context (default: the current context).")),
			p("namespace", str("Namespace for the temporary agent pod.")),
			p("image", str("Agent image reference.")),
			p("portForward", &Schema{Type: "string", Enum: []string{"spdy", "websocket"},
				Description: "Protocol tried first for port-forward connections (default spdy: less CPU per byte through the API server); the other when the API server refuses it."}),
		)),
		p("routes", routesSchema),
	},
}

var runConfigSchema = &Schema{
	Type: "object", Description: "Something the user runs or debugs; the section named after type holds its settings.",
	Required: []string{"name", "type"},
	Props: []Prop{
		p("name", str("Unique name, used by tether launch NAME.")),
		p("type", &Schema{Type: "string", Enum: []string{TypeJava, TypeExec, TypeDocker, TypeRemoteDebug}}),
		p("java", obj("A JVM: mainClass on a classpath, or a jar.", nil,
			p("mainClass", str("Fully qualified main class.")),
			p("jar", str("Executable jar (instead of mainClass).")),
			p("classpath", strs("Classpath entries.")),
			p("vmArgs", strs("JVM arguments.")),
			p("args", strs("Program arguments.")),
			p("javaHome", str("JDK to use (default: JAVA_HOME, else java on PATH).")),
			p("agent", &Schema{Type: "boolean", Description: "With interconnect on, use Tether's Java agent (every connect, NIO included, and private DNS names); false: SOCKS JVM arguments only (blocking sockets). Default true."}),
		)),
		p("exec", obj("Any command; it gets proxy environment variables.", []string{"command"},
			p("command", strs("argv: the program and its arguments.")),
		)),
		p("docker", obj("The app in a local container.", []string{"image"},
			p("image", str("Image reference.")),
			p("command", strs("Entrypoint override.")),
			p("args", strs("Arguments.")),
			p("env", envSchema),
			p("ports", strs(`Published ports as for docker run: "8080:8080".`)),
			p("volumes", strs(`Volumes as for docker run: "/host:/ctr:ro".`)),
			p("workdir", str("Working directory in the container.")),
			p("user", str("User in the container.")),
		)),
		p("remoteDebug", obj("A debug port inside the private network, forwarded to loopback.", []string{"proxy", "host", "port"},
			p("proxy", str("Proxy to go through.")),
			p("host", str("Debuggee host as seen from the proxy.")),
			p("port", port("Debuggee port.")),
			p("localPort", port("Local port (0 = any free port).")),
		)),
		p("env", envSchema),
		p("cwd", str("Working directory (default: the workspace root).")),
		p("interconnect", obj("The IDE toggle: reach the cloud through a proxy.", nil,
			p("enabled", &Schema{Type: "boolean"}),
			p("proxy", str("Name of the proxy to use.")),
			p("expose", &Schema{Type: "array", Description: "Local ports that cloud callers reach on the proxy side.",
				Items: obj("A local port reachable from the cloud.", []string{"localPort"},
					p("localPort", &Schema{Type: "integer", Min: 1, Max: 65535, Description: "The app's local port."}),
					p("remotePort", port("Port on the proxy side (0 = any free port).")),
					p("registry", &Schema{Type: "string", Enum: []string{"nacos", "eureka", "consul", "dubbo"},
						Description: "Make the app register the proxy-side address in this service registry."}),
				)}),
			p("lane", obj("Joint debugging in a shared cluster (kubernetes proxies): requests tagged with the lane name reach this app, all others the Service's own pods.", []string{"name", "services"},
				p("name", str("Lane name, e.g. alice: requests carrying `x-tether-lane: alice` or the baggage member tether-lane=alice are routed here.")),
				p("services", &Schema{Type: "array", Description: "Services (in the proxy's namespace) whose tagged requests reach this app.",
					Items: obj("A Service port routed to a local port.", []string{"service", "port", "localPort"},
						p("service", str("Service name in the proxy's namespace.")),
						p("port", &Schema{Type: "integer", Min: 1, Max: 65535, Description: "The Service port (HTTP/1.1)."}),
						p("localPort", &Schema{Type: "integer", Min: 1, Max: 65535, Description: "The app's local port."}),
					)}),
			)),
		)),
		p("debug", obj("Debug settings.", nil,
			p("port", port("Local debug port (0 = any free port).")),
			p("suspend", &Schema{Type: "boolean", Description: "Wait for the debugger before running main."}),
		)),
	},
}

// FileSchema describes tether.yaml.
var FileSchema = &Schema{
	Type: "object", Description: "Tether workspace file: proxies and run configurations.",
	Required: []string{"version"},
	Props: []Prop{
		p("version", &Schema{Type: "integer", Min: CurrentVersion, Max: CurrentVersion, Description: "File format version."}),
		p("proxies", &Schema{Type: "array", Items: proxySchema}),
		p("configurations", &Schema{Type: "array", Items: runConfigSchema}),
	},
}

func init() {
	var allOf []any
	for _, t := range []string{TypeJava, TypeExec, TypeDocker, TypeRemoteDebug} {
		allOf = append(allOf, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"type": map[string]any{"const": t}}, "required": []string{"type"}},
			"then": map[string]any{"required": []string{t}},
		})
	}
	runConfigSchema.Extra = map[string]any{"allOf": allOf}
	proxySchema.Extra = map[string]any{"oneOf": []any{
		map[string]any{"required": []string{"ssh"}},
		map[string]any{"required": []string{"kubernetes"}},
	}}
}

// JSONSchema returns the JSON Schema (draft 2020-12) of tether.yaml.
func JSONSchema() []byte {
	root := FileSchema.jsonSchema()
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = "https://tether.dev/schema/tether.schema.json"
	root["title"] = "tether.yaml"
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		panic(err) // static data
	}
	return append(b, '\n')
}

func (s *Schema) jsonSchema() map[string]any {
	m := map[string]any{}
	switch s.Type {
	case "scalar":
		m["type"] = []string{"string", "number", "boolean"}
	default:
		m["type"] = s.Type
	}
	if s.Description != "" {
		m["description"] = s.Description
	}
	if len(s.Enum) > 0 {
		m["enum"] = s.Enum
	}
	if s.Type == "integer" && s.Max > 0 {
		m["minimum"], m["maximum"] = s.Min, s.Max
	}
	if s.Items != nil {
		m["items"] = s.Items.jsonSchema()
	}
	if s.Type == "object" {
		if s.Values != nil {
			m["additionalProperties"] = s.Values.jsonSchema()
		} else {
			props := map[string]any{}
			for _, pr := range s.Props {
				props[pr.Name] = pr.Schema.jsonSchema()
			}
			m["properties"] = props
			m["additionalProperties"] = false
		}
	}
	if len(s.Required) > 0 {
		m["required"] = s.Required
	}
	for k, v := range s.Extra {
		m[k] = v
	}
	return m
}

// Problems is a list of problems that is also an error: a config error
// (code -32602 with data.problems over JSON-RPC).
type Problems []Problem

// ErrorCategory: the configuration must be fixed.
func (ps Problems) ErrorCategory() errcat.Category { return errcat.Config }

func (ps Problems) Error() string {
	if len(ps) == 0 {
		return "no problems"
	}
	msg := problemString(ps[0])
	if len(ps) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(ps)-1)
	}
	return msg
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "an object"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	}
	return "a " + strings.TrimPrefix(n.Tag, "!!")
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// Check walks n and appends a problem for every mismatch with s.
func (s *Schema) Check(n *yaml.Node, path string, out *Problems) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	bad := func(format string, args ...any) {
		*out = append(*out, Problem{Path: path, Line: n.Line, Message: fmt.Sprintf(format, args...)})
	}
	switch s.Type {
	case "object":
		if n.Kind != yaml.MappingNode {
			bad("expected an object, got %s", kindName(n))
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			kp := join(path, key)
			if seen[key] {
				*out = append(*out, Problem{Path: kp, Line: k.Line, Message: "duplicate field"})
				continue
			}
			seen[key] = true
			if s.Values != nil {
				s.Values.Check(v, kp, out)
				continue
			}
			i := slices.IndexFunc(s.Props, func(pr Prop) bool { return pr.Name == key })
			if i < 0 {
				*out = append(*out, Problem{Path: kp, Line: k.Line, Message: "unknown field" + s.suggest(key)})
				continue
			}
			if isNull(v) {
				continue // an empty value is the same as an absent one
			}
			s.Props[i].Schema.Check(v, kp, out)
		}
		for _, r := range s.Required {
			if !seen[r] {
				*out = append(*out, Problem{Path: join(path, r), Line: n.Line, Message: "required"})
			}
		}
	case "array":
		if n.Kind != yaml.SequenceNode {
			bad("expected a list, got %s", kindName(n))
			return
		}
		for i, item := range n.Content {
			s.Items.Check(item, fmt.Sprintf("%s[%d]", path, i), out)
		}
	case "string":
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			bad("expected a string, got %s", kindName(n))
			return
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, n.Value) {
			bad("must be one of %s, not %q", strings.Join(s.Enum, ", "), n.Value)
		}
	case "integer":
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			bad("expected an integer, got %s", kindName(n))
			return
		}
		var v int
		if err := n.Decode(&v); err != nil {
			bad("not a valid integer: %v", err)
			return
		}
		if s.Max > 0 && (v < s.Min || v > s.Max) {
			bad("must be between %d and %d, not %d", s.Min, s.Max, v)
		}
	case "boolean":
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			bad("expected true or false, got %s", kindName(n))
		}
	case "scalar":
		if n.Kind != yaml.ScalarNode || isNull(n) {
			bad("expected a string, number or boolean, got %s", kindName(n))
		}
	}
}

// suggest names a known field that differs from key only by case, a common
// slip (mainclass for mainClass).
func (s *Schema) suggest(key string) string {
	for _, pr := range s.Props {
		if strings.EqualFold(pr.Name, key) {
			return fmt.Sprintf(" (did you mean %q?)", pr.Name)
		}
	}
	names := make([]string, len(s.Props))
	for i, pr := range s.Props {
		names[i] = pr.Name
	}
	return "; known fields: " + strings.Join(names, ", ")
}

func problemString(p Problem) string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}
