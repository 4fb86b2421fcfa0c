package workspace

import (
	"fmt"
	"regexp"
)

// laneName: a lane name travels in a header and in Kubernetes label values
// and object names, so it is a lowercase DNS label of at most 40 characters.
var laneName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$`)

// serviceName is a Kubernetes Service name (RFC 1035 label). Tether adds
// "-tether-router" and "-tether-base" to it, so it must leave room for them.
var serviceName = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$`)

// lane checks interconnect.lane at path.
func (c *checker) lane(path string, ic *Interconnect, f *File) {
	l := ic.Lane
	if !laneName.MatchString(l.Name) {
		c.add(path+".name", "%q is not a lane name (lowercase letters, digits and '-', at most 40 characters, like alice)", l.Name)
	}
	if px, ok := f.Proxy(ic.Proxy); ok && px.Kubernetes == nil {
		c.add(path, "lanes need a kubernetes proxy; %s is not one", ic.Proxy)
	}
	if len(l.Services) == 0 {
		c.add(path+".services", "required: at least one Service")
	}
	seen := map[string]int{}
	for i, s := range l.Services {
		sp := fmt.Sprintf("%s.services[%d]", path, i)
		if !serviceName.MatchString(s.Service) {
			c.add(sp+".service", "%q is not a Service name (lowercase RFC 1035 label of at most 49 characters)", s.Service)
		}
		if s.Port < 1 || s.Port > 65535 {
			c.add(sp+".port", "must be between 1 and 65535")
		}
		if s.LocalPort < 1 || s.LocalPort > 65535 {
			c.add(sp+".localPort", "must be between 1 and 65535")
		}
		key := fmt.Sprintf("%s:%d", s.Service, s.Port)
		if j, dup := seen[key]; dup {
			c.add(sp, "%s port %d is already in services[%d]", s.Service, s.Port, j)
		}
		seen[key] = i
	}
}
