package workspace

import (
	"strings"
	"testing"
)

func TestLaneProblems(t *testing.T) {
	bad := `version: 1
proxies:
  - name: k
    kubernetes: {namespace: dev}
  - name: s
    ssh: {host: h}
configurations:
  - name: a
    type: exec
    exec: {command: [x]}
    interconnect:
      enabled: true
      proxy: k
      lane: {name: Alice_1, services: [{service: orders, port: 80, localPort: 0}, {service: orders, port: 80, localPort: 8080}, {service: 9x, port: 70000, localPort: 1}]}
  - name: b
    type: exec
    exec: {command: [x]}
    interconnect: {enabled: true, proxy: s, lane: {name: bob, services: []}}
  - name: c
    type: exec
    exec: {command: [x]}
    interconnect: {enabled: true, proxy: k, lane: {name: carol, services: [{service: orders, port: 80, localPort: 8080}]}}
`
	s, err := writeSample(t, bad).Load()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range s.Problems {
		got[p.Path] = p.Message
	}
	want := map[string]string{
		"configurations[0].interconnect.lane.name":                  "is not a lane name",
		"configurations[0].interconnect.lane.services[0].localPort": "between 1 and 65535",
		"configurations[0].interconnect.lane.services[1]":           "already in services[0]",
		"configurations[0].interconnect.lane.services[2].service":   "is not a Service name",
		"configurations[0].interconnect.lane.services[2].port":      "between 1 and 65535",
		"configurations[1].interconnect.lane":                       "need a kubernetes proxy",
		"configurations[1].interconnect.lane.services":              "at least one",
	}
	for path, msg := range want {
		if !strings.Contains(got[path], msg) {
			t.Errorf("%s: got %q, want it to contain %q (all: %v)", path, got[path], msg, s.Problems)
		}
	}
	for path := range got {
		if strings.HasPrefix(path, "configurations[2]") {
			t.Errorf("valid lane has a problem: %s: %s", path, got[path])
		}
	}
}
