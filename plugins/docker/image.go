package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/tether-dev/tether/internal/errcat"
	"github.com/tether-dev/tether/progress"
)

// AgentDockerfile is the sidecar image recipe, the same as
// images/agent/Dockerfile: the static tether-agent and nothing else. The
// sidecar mode is chosen by the container command (RunSpec.SidecarArgs,
// e.g. ["sidecar", ...]).
const AgentDockerfile = `FROM scratch
COPY tether-agent /tether-agent
ENTRYPOINT ["/tether-agent"]
`

// Image labels.
const (
	LabelAgentSHA = "tether.agent.sha256" // sha256 of the tether-agent binary in the image
)

// BuildFile is one file of an in-memory build context.
type BuildFile struct {
	Name string // path in the context, slash separated
	Mode int64  // e.g. 0o755; 0 means 0o644
	Data []byte
}

// BuildAgentImage builds the sidecar image tag from agentBinary (a static
// tether-agent) with the classic builder and an in-memory context: no
// BuildKit, no registry. It does nothing when an image with that tag exists
// and was built from the same binary (the image carries the binary's sha256
// as a label); an image built from another binary is rebuilt, so a fresh
// `make` never runs a stale sidecar.
func (d *Docker) BuildAgentImage(ctx context.Context, agentBinary, tag string) error {
	bin, err := os.ReadFile(agentBinary)
	if err != nil {
		return errcat.Environment.Newf("sidecar image: read agent binary: %w", err) // the installation
	}
	sum := sha256.Sum256(bin)
	digest := hex.EncodeToString(sum[:])
	ins, ok, err := d.imageExists(ctx, tag)
	if err != nil {
		return err
	}
	old := ""
	if ok {
		old = ins.ID
		var have string
		if ins.Config != nil {
			have = ins.Config.Labels[LabelAgentSHA]
		}
		if have == "" || have == digest {
			return nil
		}
		progress.Report(ctx, "Rebuilding sidecar image %s (tether-agent changed)", tag)
	} else {
		progress.Report(ctx, "Building sidecar image %s", tag)
	}
	if err := d.BuildImage(ctx, tag, AgentDockerfile, map[string]string{
		LabelManaged:  "true",
		LabelAgentSHA: digest,
	}, BuildFile{Name: "tether-agent", Mode: 0o755, Data: bin}); err != nil {
		return err
	}
	if old != "" {
		// The previous build is now untagged: drop it unless a container still uses it.
		_, _ = d.api.ImageRemove(ctx, old, image.RemoveOptions{PruneChildren: true})
	}
	return nil
}

// BuildImage builds tag from dockerfile and files with the classic builder
// (no BuildKit; works without a registry for FROM scratch or local base
// images). Build output lines are sent to progress.Report.
func (d *Docker) BuildImage(ctx context.Context, tag, dockerfile string, labels map[string]string, files ...BuildFile) error {
	start := time.Now()
	tarball, err := buildContext(dockerfile, files)
	if err != nil {
		return err
	}
	resp, err := d.api.ImageBuild(ctx, bytes.NewReader(tarball), build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		PullParent:  false,
		Labels:      labels,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return d.daemonError(fmt.Errorf("build image %s: %w", tag, err))
	}
	defer resp.Body.Close()
	if err := readBuildOutput(ctx, resp.Body); err != nil {
		return errcat.Environment.Newf("build image %s: %w", tag, err)
	}
	if _, ok, err := d.imageExists(ctx, tag); err != nil {
		return err
	} else if !ok {
		return errcat.Environment.Newf("build image %s: the daemon reported success but the image is missing", tag)
	}
	progress.Report(ctx, "Built image %s in %s", tag, time.Since(start).Round(time.Millisecond))
	return nil
}

// buildContext makes the tar stream of a build context.
func buildContext(dockerfile string, files []BuildFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	all := append([]BuildFile{{Name: "Dockerfile", Data: []byte(dockerfile)}}, files...)
	sort.SliceStable(all[1:], func(i, j int) bool { return all[1+i].Name < all[1+j].Name })
	for _, f := range all {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{
			Name:     f.Name,
			Mode:     mode,
			Size:     int64(len(f.Data)),
			ModTime:  time.Unix(0, 0),
			Typeflag: tar.TypeReg,
		}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// buildMessage is one JSON message of the build output stream.
type buildMessage struct {
	Stream      string `json:"stream"`
	Status      string `json:"status"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// readBuildOutput consumes the build stream, reporting its lines as progress
// and returning the builder's error, if any, with the last output lines.
func readBuildOutput(ctx context.Context, r io.Reader) error {
	dec := json.NewDecoder(r)
	var last []string
	for {
		var m buildMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read build output: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" && m.Error == "" {
			m.Error = m.ErrorDetail.Message
		}
		if m.Error != "" {
			msg := strings.TrimSpace(m.Error)
			if len(last) > 0 {
				msg += "\n" + strings.Join(last, "\n")
			}
			return errors.New(msg)
		}
		for _, line := range strings.Split(m.Stream+m.Status, "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			last = append(last, line)
			if len(last) > 10 {
				last = last[1:]
			}
			progress.Report(ctx, "%s", line)
		}
	}
}
