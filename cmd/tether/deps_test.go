package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoCloudPackages keeps the cloud side out of the backend binary: the
// agent package (nftables, DNS server, sidecar) belongs to tether-agent;
// what both need is in internal/agentproto.
func TestNoCloudPackages(t *testing.T) {
	for _, tags := range []string{"", "tethertest"} {
		out, err := exec.Command("go", "list", "-deps", "-tags", tags, ".").CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		for _, p := range strings.Fields(string(out)) {
			if p == "github.com/tether-dev/tether/agent" || strings.HasPrefix(p, "github.com/tether-dev/tether/agent/") ||
				strings.Contains(p, "nftables") || strings.HasPrefix(p, "github.com/mdlayher/netlink") {
				t.Errorf("tether (tags %q) links the cloud-side package %s", tags, p)
			}
		}
	}
}
