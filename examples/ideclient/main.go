// Command ideclient plays an IDE plugin against a real `tether serve`: it
// starts the backend on stdio, initializes, saves a proxy and a run
// configuration, reads them back, and shuts down, printing every exchange.
//
//	go run ./examples/ideclient [-tether bin/tether] [-workspace DIR]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/tether-dev/tether/client"
)

func main() {
	bin := flag.String("tether", "bin/tether", "the tether binary")
	ws := flag.String("workspace", "", "workspace directory (default: a new temporary one)")
	flag.Parse()
	if err := run(*bin, *ws); err != nil {
		fmt.Fprintln(os.Stderr, "ideclient:", err)
		os.Exit(1)
	}
}

func run(bin, ws string) error {
	if ws == "" {
		dir, err := os.MkdirTemp("", "tether-demo-")
		if err != nil {
			return err
		}
		ws = dir
	}
	cmd := exec.Command(bin, "serve", "--ppid", fmt.Sprint(os.Getpid()))
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w (run `make build` first)", bin, err)
	}
	c := client.New(out, in, in)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func(method string, params any) error {
		var res json.RawMessage
		t := time.Now()
		err := c.Call(ctx, method, params, &res)
		p, _ := json.Marshal(params)
		fmt.Printf("--> %s %s\n", method, p)
		if err != nil {
			fmt.Printf("<-- error: %v (%s)\n\n", err, time.Since(t).Round(time.Microsecond))
			return err
		}
		fmt.Printf("<-- %s (%s)\n\n", res, time.Since(t).Round(time.Microsecond))
		return nil
	}
	if err := call("initialize", map[string]any{"processId": os.Getpid(), "rootUri": "file://" + ws,
		"clientInfo": map[string]string{"name": "ideclient", "version": "1"}}); err != nil {
		return err
	}
	fmt.Printf("(backend started and answered initialize in %s)\n\n", time.Since(start).Round(time.Millisecond))
	_ = c.Notify("initialized", map[string]any{})
	steps := []struct {
		method string
		params any
	}{
		{"proxy/save", map[string]any{"proxy": map[string]any{"name": "dev-bastion",
			"ssh":    map[string]any{"host": "10.200.0.2", "user": "dev"},
			"routes": map[string]any{"cidrs": []string{"10.10.0.0/16"}, "domains": []string{"vpc.internal"}}}}},
		{"runConfig/save", map[string]any{"config": map[string]any{"name": "orders", "type": "java",
			"java":         map[string]any{"mainClass": "com.example.Main", "classpath": []string{"build/classes"}},
			"interconnect": map[string]any{"enabled": true, "proxy": "dev-bastion"}}}},
		{"runConfig/list", map[string]any{}},
		{"runConfig/validate", map[string]any{"config": map[string]any{"name": "broken", "type": "java", "java": map[string]any{}}}},
	}
	for _, s := range steps {
		if err := call(s.method, s.params); err != nil {
			return err
		}
	}
	_ = call("runConfig/save", map[string]any{"config": map[string]any{"name": "broken", "type": "java"}})
	if err := call("shutdown", nil); err != nil {
		return err
	}
	_ = c.Notify("exit", nil)
	err := cmd.Wait()
	fmt.Printf("backend exited: %v; the workspace file %s/tether.yaml now holds:\n\n", exitStatus(err), ws)
	data, _ := os.ReadFile(ws + "/tether.yaml")
	fmt.Print(string(data))
	return nil
}

func exitStatus(err error) string {
	if err == nil {
		return "exit code 0"
	}
	return err.Error()
}
