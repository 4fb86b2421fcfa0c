package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/tether-dev/tether/internal/errcat"
)

// Container labels. Everything Tether creates carries LabelManaged=true and
// the owner labels; Clean only ever considers containers whose owner uid and
// host are the caller's.
const (
	LabelManaged    = "tether.managed"
	LabelSession    = "tether.session"
	LabelOwnerPID   = "tether.owner.pid"
	LabelOwnerUID   = "tether.owner.uid"
	LabelOwnerHost  = "tether.owner.host"
	LabelOwnerStart = "tether.owner.start" // the owner's start time (/proc/PID/stat field 22); tells a reused pid apart
	LabelWorkspace  = "tether.workspace"
	LabelRole       = "tether.role" // "sidecar" or "app"
)

// Owner identifies the process that owns containers.
type Owner struct {
	PID   int
	UID   int
	Host  string
	Start string // process start time in clock ticks since boot, "" when unknown
}

// Self is the calling process as an owner.
func Self() Owner {
	return Owner{PID: os.Getpid(), UID: os.Getuid(), Host: hostname, Start: procStart(os.Getpid())}
}

// ownerOf describes pid (the session's OwnerPID) as an owner: our uid and
// host, and its start time when it is visible.
func ownerOf(pid int) Owner {
	o := Self()
	if pid > 0 && pid != o.PID {
		o.PID = pid
		o.Start = procStart(pid)
	}
	return o
}

// Labels returns the labels of a container of session owned by o.
func (o Owner) Labels(session, workspace, role string) map[string]string {
	l := map[string]string{
		LabelManaged:   "true",
		LabelSession:   session,
		LabelOwnerPID:  strconv.Itoa(o.PID),
		LabelOwnerUID:  strconv.Itoa(o.UID),
		LabelOwnerHost: o.Host,
		LabelWorkspace: workspace,
	}
	if o.Start != "" {
		l[LabelOwnerStart] = o.Start
	}
	if role != "" {
		l[LabelRole] = role
	}
	return l
}

// procStart returns field 22 (starttime) of /proc/PID/stat, or "".
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	// The command name (field 2) may contain spaces and parentheses: count from its end.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): field 22 is f[19].
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// alive reports whether the owner process recorded in labels still runs:
// its pid exists and, when the start time was recorded, it is the same
// process (not a reused pid).
func alive(labels map[string]string) bool {
	pid, err := strconv.Atoi(labels[LabelOwnerPID])
	if err != nil || pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if want := labels[LabelOwnerStart]; want != "" {
		if have := procStart(pid); have != "" && have != want {
			return false
		}
	}
	return true
}

// ours reports whether labels name self's uid and host as owner.
func ours(labels map[string]string, self Owner) bool {
	return labels[LabelManaged] == "true" &&
		labels[LabelOwnerUID] == strconv.Itoa(self.UID) &&
		labels[LabelOwnerHost] == self.Host
}

// shouldClean decides for one container: never another owner's; all of ours
// when all is set; otherwise ours whose owner process is gone.
func shouldClean(labels map[string]string, self Owner, all bool, isAlive func(map[string]string) bool) bool {
	if !ours(labels, self) {
		return false
	}
	return all || !isAlive(labels)
}

// Clean removes the containers Tether created whose owner uid and host are
// the caller's and whose owner process is no longer alive (all of the
// caller's, running sessions included, when all is true). Containers of
// other users or other hosts (a shared daemon) are never touched. It returns
// the names of the removed containers; app containers go before sidecars.
func Clean(ctx context.Context, d *Docker, all bool) ([]string, error) {
	return d.clean(ctx, Self(), all, alive)
}

func (d *Docker) clean(ctx context.Context, self Owner, all bool, isAlive func(map[string]string) bool) ([]string, error) {
	list, err := d.api.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelManaged+"=true")),
	})
	if err != nil {
		return nil, d.daemonError(fmt.Errorf("list containers: %w", err))
	}
	var victims []container.Summary
	for _, c := range list {
		if shouldClean(c.Labels, self, all, isAlive) {
			victims = append(victims, c)
		}
	}
	// Apps first: they live in their sidecar's network namespace.
	sort.SliceStable(victims, func(i, j int) bool {
		return victims[i].Labels[LabelRole] != "sidecar" && victims[j].Labels[LabelRole] == "sidecar"
	})
	var removed []string
	var errs []error
	for _, c := range victims {
		name := c.ID
		if len(name) > 12 {
			name = name[:12]
		}
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		err := d.api.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !isNotFound(err) {
			errs = append(errs, errcat.Environment.Newf("remove container %s: %w", name, err))
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}
