package workspace

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
)

type checker struct {
	out Problems
}

func (c *checker) add(path, format string, args ...any) {
	c.out = append(c.out, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Validate checks the whole file's meaning (schema problems are found when
// it is parsed): unique names, references between entries, one section per
// type, valid addresses.
func (f *File) Validate() Problems {
	var c checker
	if f.Version != CurrentVersion {
		c.add("version", "must be %d (this Tether reads version %d files)", CurrentVersion, CurrentVersion)
	}
	seen := map[string]int{}
	for i := range f.Proxies {
		path := fmt.Sprintf("proxies[%d]", i)
		c.proxy(path, &f.Proxies[i])
		if j, dup := seen[f.Proxies[i].Name]; dup {
			c.add(path+".name", "duplicate name %q (also proxies[%d])", f.Proxies[i].Name, j)
		}
		seen[f.Proxies[i].Name] = i
	}
	seen = map[string]int{}
	for i := range f.Configurations {
		path := fmt.Sprintf("configurations[%d]", i)
		c.config(path, &f.Configurations[i], f)
		if j, dup := seen[f.Configurations[i].Name]; dup {
			c.add(path+".name", "duplicate name %q (also configurations[%d])", f.Configurations[i].Name, j)
		}
		seen[f.Configurations[i].Name] = i
	}
	return c.out
}

// ValidateConfig checks one run configuration against the proxies of f.
// Paths are relative to the configuration (java.mainClass).
func (f *File) ValidateConfig(rc *RunConfig) Problems {
	var c checker
	c.config("", rc, f)
	return c.out
}

// ValidateProxy checks one proxy. Paths are relative to the proxy.
func ValidateProxy(px *Proxy) Problems {
	var c checker
	c.proxy("", px)
	return c.out
}

func (c *checker) name(path, name string) {
	switch {
	case name == "":
		c.add(join(path, "name"), "required")
	case strings.TrimSpace(name) != name:
		c.add(join(path, "name"), "must not start or end with spaces")
	case len(name) > 200:
		c.add(join(path, "name"), "too long (at most 200 characters)")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		c.add(join(path, "name"), "must not contain control characters")
	}
}

func (c *checker) proxy(path string, px *Proxy) {
	c.name(path, px.Name)
	switch {
	case px.SSH == nil && px.Kubernetes == nil:
		c.add(join(path, "ssh"), "required: a proxy needs an ssh or a kubernetes section")
	case px.SSH != nil && px.Kubernetes != nil:
		c.add(join(path, "kubernetes"), "not allowed together with ssh: a proxy is one or the other")
	}
	if s := px.SSH; s != nil {
		sp := join(path, "ssh")
		if s.Host == "" {
			c.add(join(sp, "host"), "required")
		} else if strings.ContainsAny(s.Host, " \t@/") {
			c.add(join(sp, "host"), "%q is not a host name or address", s.Host)
		}
		if s.Port < 0 || s.Port > 65535 {
			c.add(join(sp, "port"), "must be between 1 and 65535")
		}
		switch s.StrictHostKeyChecking {
		case "", "yes", "accept-new":
		default:
			c.add(join(sp, "strictHostKeyChecking"), `must be "yes" or "accept-new", not %q`, s.StrictHostKeyChecking)
		}
		for _, hop := range strings.Split(s.ProxyJump, ",") {
			if hop = strings.TrimSpace(hop); s.ProxyJump != "" && (hop == "" || strings.ContainsAny(hop, " \t/")) {
				c.add(join(sp, "proxyJump"), "%q is not a jump host (user@host:port)", hop)
			}
		}
	}
	if r := px.Routes; r != nil {
		rp := join(path, "routes")
		for i, cidr := range r.CIDRs {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				c.add(fmt.Sprintf("%s.cidrs[%d]", rp, i), "%q is not a CIDR range (like 10.10.0.0/16)", cidr)
			}
		}
		for i, d := range r.Domains {
			d = strings.TrimSuffix(strings.TrimPrefix(d, "."), ".")
			if d == "" || strings.ContainsAny(d, " \t/:*") || strings.Contains(d, "..") {
				c.add(fmt.Sprintf("%s.domains[%d]", rp, i), "%q is not a domain suffix (like vpc.internal)", r.Domains[i])
			}
		}
	}
}

func (c *checker) config(path string, rc *RunConfig, f *File) {
	c.name(path, rc.Name)
	sections := map[string]bool{
		TypeJava: rc.Java != nil, TypeExec: rc.Exec != nil,
		TypeDocker: rc.Docker != nil, TypeRemoteDebug: rc.RemoteDebug != nil,
	}
	switch rc.Type {
	case "":
		c.add(join(path, "type"), "required (java, exec, docker or remoteDebug)")
	case TypeJava, TypeExec, TypeDocker, TypeRemoteDebug:
		if !sections[rc.Type] {
			c.add(join(path, rc.Type), "required for type %s", rc.Type)
		}
	default:
		c.add(join(path, "type"), "must be one of java, exec, docker, remoteDebug, not %q", rc.Type)
	}
	for _, t := range []string{TypeJava, TypeExec, TypeDocker, TypeRemoteDebug} {
		if sections[t] && t != rc.Type && rc.Type != "" {
			c.add(join(path, t), "not allowed for type %s (remove it or change type)", rc.Type)
		}
	}
	if j := rc.Java; j != nil && rc.Type == TypeJava {
		jp := join(path, "java")
		switch {
		case j.MainClass == "" && j.Jar == "":
			c.add(join(jp, "mainClass"), "required (or java.jar)")
		case j.MainClass != "" && j.Jar != "":
			c.add(join(jp, "jar"), "not allowed together with mainClass: use one")
		}
		if j.MainClass != "" && strings.ContainsAny(j.MainClass, " /\\") {
			c.add(join(jp, "mainClass"), "%q is not a class name (like com.example.Main)", j.MainClass)
		}
	}
	if e := rc.Exec; e != nil && rc.Type == TypeExec && (len(e.Command) == 0 || e.Command[0] == "") {
		c.add(join(path, "exec.command"), "required: the program to run and its arguments")
	}
	if d := rc.Docker; d != nil && rc.Type == TypeDocker {
		dp := join(path, "docker")
		if d.Image == "" {
			c.add(join(dp, "image"), "required")
		}
		for i, pm := range d.Ports {
			if !validPortMapping(pm) {
				c.add(fmt.Sprintf("%s.ports[%d]", dp, i), `%q is not a port mapping (like "8080:8080" or "127.0.0.1:8080:80/tcp")`, pm)
			}
		}
		for i, v := range d.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") {
				c.add(fmt.Sprintf("%s.volumes[%d]", dp, i), `%q is not a volume (like "/host:/ctr:ro")`, v)
			}
		}
	}
	if d := rc.RemoteDebug; d != nil && rc.Type == TypeRemoteDebug {
		dp := join(path, "remoteDebug")
		c.proxyRef(join(dp, "proxy"), d.Proxy, f, true)
		if d.Host == "" {
			c.add(join(dp, "host"), "required")
		}
		if d.Port < 1 || d.Port > 65535 {
			c.add(join(dp, "port"), "must be between 1 and 65535")
		}
	}
	for k := range rc.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			c.add(join(path, "env"), "%q is not a variable name", k)
		}
	}
	if ic := rc.Interconnect; ic != nil {
		c.proxyRef(join(path, "interconnect.proxy"), ic.Proxy, f, ic.Enabled)
		locals, remotes := map[int]int{}, map[int]int{}
		for i, e := range ic.Expose {
			ep := fmt.Sprintf("%s.expose[%d]", join(path, "interconnect"), i)
			if e.LocalPort < 1 || e.LocalPort > 65535 {
				c.add(ep+".localPort", "must be between 1 and 65535")
			} else if j, dup := locals[e.LocalPort]; dup {
				c.add(ep+".localPort", "port %d is already exposed by expose[%d]", e.LocalPort, j)
			}
			locals[e.LocalPort] = i
			if e.RemotePort < 0 || e.RemotePort > 65535 {
				c.add(ep+".remotePort", "must be between 0 (any) and 65535")
			} else if j, dup := remotes[e.RemotePort]; dup && e.RemotePort != 0 {
				c.add(ep+".remotePort", "port %d is already used by expose[%d]", e.RemotePort, j)
			}
			remotes[e.RemotePort] = i
			switch e.Registry {
			case "", "nacos", "eureka", "consul", "dubbo":
			default:
				c.add(ep+".registry", "must be nacos, eureka, consul or dubbo, not %q", e.Registry)
			}
		}
		if ic.Lane != nil {
			c.lane(join(path, "interconnect.lane"), ic, f)
		}
	}
}

func (c *checker) proxyRef(path, name string, f *File, required bool) {
	if name == "" {
		if required {
			c.add(path, "required: which proxy to go through")
		}
		return
	}
	if _, ok := f.Proxy(name); !ok {
		c.add(path, "no proxy named %q", name)
	}
}

// validPortMapping accepts docker run's -p forms: [ip:][hostPort:]ctrPort[/proto].
func validPortMapping(s string) bool {
	s, proto, _ := strings.Cut(s, "/")
	if proto != "" && proto != "tcp" && proto != "udp" {
		return false
	}
	parts := strings.Split(s, ":")
	if len(parts) == 3 {
		if _, err := netip.ParseAddr(parts[0]); err != nil {
			return false
		}
		parts = parts[1:]
	}
	if len(parts) > 2 {
		return false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if (p == "" && i == 0 && len(parts) == 2) || (err == nil && n >= 1 && n <= 65535) {
			continue
		}
		return false
	}
	return true
}
